"""terminado, served the way Jupyter does, for `clarateach bench terminal` to compare against.

    pip install terminado
    python3 bench/terminado/serve.py --port 8765 [--shell "bash --norc --noprofile"]

Terminals are named by URL: ws://127.0.0.1:PORT/websocket/NAME (several clients of one name share
the terminal, like several viewers of one ClaraTeach session).
"""
import argparse
import shlex

import tornado.ioloop
import tornado.web
from terminado import NamedTermManager, TermSocket


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--shell", default="bash --norc --noprofile")
    p.add_argument("--cwd", default=None)
    a = p.parse_args()
    mgr = NamedTermManager(shell_command=shlex.split(a.shell), max_terminals=16,
                           term_settings={"cwd": a.cwd} if a.cwd else {})
    app = tornado.web.Application([(r"/websocket/(\w+)", TermSocket, {"term_manager": mgr})])
    app.listen(a.port, "127.0.0.1")
    print(f"terminado listening on 127.0.0.1:{a.port}", flush=True)
    tornado.ioloop.IOLoop.current().start()


if __name__ == "__main__":
    main()
