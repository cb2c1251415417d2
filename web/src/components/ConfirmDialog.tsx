// Accessible confirmation built on <dialog>: focus trap, Escape to cancel, focus returns after.

import { useEffect, useRef, type ReactNode } from 'react';

export interface ConfirmProps {
  open: boolean;
  title: string;
  children?: ReactNode;
  confirmLabel: string;
  danger?: boolean;
  busy?: boolean;
  onConfirm: () => void;
  onCancel: () => void;
}

export function ConfirmDialog(p: ConfirmProps) {
  const ref = useRef<HTMLDialogElement>(null);
  useEffect(() => {
    const d = ref.current;
    if (!d) return;
    if (p.open && !d.open) d.showModal();
    if (!p.open && d.open) d.close();
  }, [p.open]);
  return (
    <dialog
      ref={ref}
      className="modal"
      aria-labelledby="confirm-title"
      onCancel={(e) => {
        e.preventDefault();
        p.onCancel();
      }}
    >
      <form
        method="dialog"
        onSubmit={(e) => {
          e.preventDefault();
          p.onConfirm();
        }}
      >
        <h2 id="confirm-title">{p.title}</h2>
        {p.children}
        <div className="actions">
          <button type="button" className="btn" onClick={p.onCancel} autoFocus>
            Cancel
          </button>
          <button type="submit" className={`btn ${p.danger ? 'danger solid' : 'primary'}`} disabled={p.busy}>
            {p.confirmLabel}
          </button>
        </div>
      </form>
    </dialog>
  );
}
