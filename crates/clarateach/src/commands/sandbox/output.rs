//! How `sandbox` commands print: text for people, one JSON object per line with `--json`
//! (`{"level": "info", "message": ..., <fields>}` as ERA prints, errors with `code`).

use clarateach_sandbox::{RunOutcome, SandboxError, SandboxInfo};
use serde::Serialize;

pub struct Out {
    json: bool,
}

fn json_line(level: &str, message: &str, value: &impl Serialize) {
    let mut obj = match serde_json::to_value(value) {
        Ok(serde_json::Value::Object(m)) => m,
        Ok(other) => {
            let mut m = serde_json::Map::new();
            m.insert("value".into(), other);
            m
        }
        Err(_) => serde_json::Map::new(),
    };
    obj.insert("level".into(), level.into());
    obj.insert("message".into(), message.into());
    println!("{}", serde_json::Value::Object(obj));
}

/// The error and its causes on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

impl Out {
    pub fn new(json: bool) -> Self {
        Self { json }
    }

    pub fn json(&self) -> bool {
        self.json
    }

    pub fn info(&self, message: &str, info: &SandboxInfo) {
        if self.json {
            return json_line("info", message, info);
        }
        let l = &info.limits;
        println!("{}", info.id);
        println!(
            "  language  {}{}",
            info.language,
            match &info.image {
                Some(i) => format!(" (image {i})"),
                None => " (host root)".into(),
            }
        );
        println!("  backend   {}", info.backend.kind().as_str());
        println!("  status    {}", info.status.as_str());
        println!(
            "  limits    cpu {:.2}, memory {} MiB, disk {} MiB, pids {}, network {}",
            f64::from(l.cpu_millis) / 1000.0,
            l.memory_mb,
            l.disk_mb,
            l.pids,
            serde_json::to_string(&l.network).unwrap_or_default()
        );
        println!("  persist   {}", if info.persist { "yes" } else { "no" });
        println!("  created   {}", info.created_at.to_rfc3339());
        if let Some(note) = &info.note {
            println!("  note      {note}");
        }
    }

    pub fn list(&self, all: &[SandboxInfo]) {
        if self.json {
            return all.iter().for_each(|i| json_line("info", "sandbox", i));
        }
        if all.is_empty() {
            return println!("no sandboxes");
        }
        println!(
            "{:<34} {:<9} {:<8} {:<8} PERSIST",
            "ID", "STATUS", "LANG", "BACKEND"
        );
        for i in all {
            println!(
                "{:<34} {:<9} {:<8} {:<8} {}",
                i.id,
                i.status.as_str(),
                i.language,
                i.backend.kind().as_str(),
                if i.persist { "yes" } else { "no" }
            );
        }
    }

    pub fn cleaned(&self, ids: &[String]) {
        for id in ids {
            if self.json {
                json_line("info", "sandbox cleaned", &serde_json::json!({ "id": id }));
            } else {
                println!("cleaned {id}");
            }
        }
    }

    /// Where a cleaned `--persist` sandbox's file system is kept.
    pub fn kept(&self, id: &str, path: &std::path::Path) {
        if self.json {
            json_line(
                "info",
                "workspace kept",
                &serde_json::json!({ "id": id, "kept": path }),
            );
        } else {
            println!(
                "kept {id}'s /workspace in {} (`create --persist --name {id}` takes it back, `clean --purge {id}` drops it)",
                path.display()
            );
        }
    }

    pub fn run(&self, outcome: &RunOutcome) {
        if self.json {
            json_line("info", "run finished", outcome);
        }
    }

    /// One chunk of a running command's output (`--json` only).
    pub fn run_output(&self, ev: &clarateach_core::RunEvent) {
        use clarateach_core::RunEvent;
        let (stream, data) = match ev {
            RunEvent::Stdout { data } => ("stdout", data),
            RunEvent::Stderr { data } => ("stderr", data),
            RunEvent::Exit { .. } => return,
        };
        json_line(
            "info",
            "output",
            &serde_json::json!({ "stream": stream, "data": data }),
        );
    }

    pub fn message(&self, message: &str, fields: serde_json::Value) {
        if self.json {
            json_line("info", message, &fields);
        } else {
            println!("{message}");
        }
    }

    pub fn error(&self, e: &SandboxError) {
        let text = chain(e);
        if self.json {
            json_line(
                "error",
                &text,
                &serde_json::json!({ "code": e.code(), "exit_code": e.exit_code() }),
            );
        }
        eprintln!("error: {text}");
    }
}
