// Small shared pieces: badges, progress bars, times, error and empty states, confirm dialogs.
import { useEffect, useId, useRef, useState, type FormEvent, type ReactNode } from 'react';
import type { DeployProgress, Role } from '../api/client.ts';
import { describeError, isConnectionError, isNotFound } from './api.ts';
import { clockTime, dateTime, humanState, iso, PHASE_LABELS, tone } from './format.ts';
import { useCan } from './hooks.ts';
import { Link, paths } from './router.tsx';

export function Badge({ state, label }: { state: string | undefined; label?: string }) {
  if (!state) return <span className="badge badge-idle">—</span>;
  return <span className={`badge badge-${tone(state)}`}>{label ?? humanState(state)}</span>;
}

export function Time({ at, date = false }: { at: number | undefined; date?: boolean }) {
  if (at === undefined) return <span className="muted">—</span>;
  return (
    <time dateTime={iso(at)} title={new Date(at).toString()}>
      {date ? dateTime(at) : clockTime(at)}
    </time>
  );
}

const PHASES = ['LAUNCH', 'HEALTH', 'LB_UPDATE', 'ACCEPTANCE', 'ADVANCE'];

/** Step k of n and the phase, as a bar that fills with steps (and phases within a step). */
export function DeployProgressBar({ progress, compact = false }: { progress: DeployProgress; compact?: boolean }) {
  const phaseIndex = Math.max(0, PHASES.indexOf(progress.phase));
  const total = Math.max(1, progress.totalSteps);
  const fraction = Math.min(1, (progress.step - 1 + phaseIndex / PHASES.length) / total);
  const text = `Step ${progress.step} of ${progress.totalSteps} · ${PHASE_LABELS[progress.phase] ?? progress.phase}`;
  return (
    <div className={`progress${compact ? ' progress-compact' : ''}`}>
      <div
        className="progress-track"
        role="progressbar"
        aria-label="Deploy progress"
        aria-valuemin={0}
        aria-valuemax={total}
        aria-valuenow={Math.round(fraction * total * 10) / 10}
        aria-valuetext={text}
      >
        {Array.from({ length: total }, (_, i) => (
          <span
            key={i}
            className={`progress-seg${i + 1 < progress.step ? ' done' : i + 1 === progress.step ? ' current' : ''}`}
            style={i + 1 === progress.step ? { ['--fill' as string]: `${Math.round((phaseIndex / PHASES.length) * 100)}%` } : undefined}
          />
        ))}
      </div>
      <span className="progress-text">{text}</span>
    </div>
  );
}

export function ErrorBox({ error, what }: { error: unknown; what?: string }) {
  const { title, details } = describeError(error);
  return (
    <div className="error-box" role="alert">
      <strong>
        {what ? `${what}: ` : ''}
        {title}
      </strong>
      {details.length > 0 && (
        <ul>
          {details.map((d) => (
            <li key={d}>{d}</li>
          ))}
        </ul>
      )}
    </div>
  );
}

/** The whole page could not load: server down, or the thing is gone. */
export function PageError({ error, what }: { error: unknown; what: string }) {
  if (isNotFound(error)) {
    return (
      <div className="state-panel" role="status">
        <h2>{what} not found</h2>
        <p>It may have been deleted, or the link is mistyped.</p>
        <p>
          <Link href={paths.requests()}>Back to all requests</Link>
        </p>
      </div>
    );
  }
  if (isConnectionError(error)) {
    return (
      <div className="state-panel" role="alert">
        <h2>Fledge is not reachable</h2>
        <p>The server did not answer. This page reloads by itself when it is back.</p>
      </div>
    );
  }
  return <ErrorBox error={error} what={`Could not load ${what.toLowerCase()}`} />;
}

export function Empty({ children }: { children: ReactNode }) {
  return <p className="empty">{children}</p>;
}

export function Loading({ label = 'Loading…' }: { label?: string }) {
  return (
    <p className="loading" role="status">
      {label}
    </p>
  );
}

/**
 * A button that opens a modal confirm dialog (native <dialog>: focus trapped, Esc closes).
 * `onConfirm` gets the form's fields; if it throws, the API's error is shown in the dialog.
 */
export function ActionButton({
  label,
  title,
  description,
  confirmLabel,
  danger = false,
  primary = false,
  disabled = false,
  needs = 'deploy',
  fields,
  onConfirm,
  onDone,
  dismissLabel = 'Cancel',
}: {
  /** the button that closes the dialog without acting ("Keep deploying") */
  dismissLabel?: string;
  label: string;
  title: string;
  description?: ReactNode;
  confirmLabel?: string;
  danger?: boolean;
  primary?: boolean;
  disabled?: boolean;
  /** the role the call needs; a weaker token sees the button disabled, saying why */
  needs?: Role;
  fields?: ReactNode;
  onConfirm: (form: FormData) => Promise<unknown>;
  onDone?: () => void;
}) {
  const ref = useRef<HTMLDialogElement>(null);
  const allowed = useCan(needs);
  const [open, setOpen] = useState(false);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>();
  const id = useId();
  useEffect(() => {
    const dialog = ref.current;
    if (!dialog) return;
    if (open && !dialog.open) dialog.showModal();
    if (!open && dialog.open) dialog.close();
  }, [open]);
  const submit = async (ev: FormEvent<HTMLFormElement>) => {
    ev.preventDefault();
    setBusy(true);
    setError(undefined);
    try {
      await onConfirm(new FormData(ev.currentTarget));
      setOpen(false);
      onDone?.();
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  return (
    <>
      <button
        type="button"
        className={danger ? 'btn btn-danger' : primary ? 'btn btn-primary' : 'btn'}
        disabled={disabled || !allowed}
        title={allowed ? undefined : `Needs a ${needs} token; this one cannot`}
        onClick={() => {
          setError(undefined);
          setOpen(true);
        }}
      >
        {label}
      </button>
      <dialog ref={ref} aria-labelledby={`${id}-title`} onClose={() => setOpen(false)}>
        {open && (
          <form onSubmit={submit} method="dialog">
            <h2 id={`${id}-title`}>{title}</h2>
            {description && <div className="dialog-text">{description}</div>}
            {fields}
            {error !== undefined && <ErrorBox error={error} what={`${label} failed`} />}
            <div className="dialog-buttons">
              <button type="button" className="btn" onClick={() => setOpen(false)}>
                {dismissLabel}
              </button>
              <button type="submit" className={danger ? 'btn btn-danger' : 'btn btn-primary'} disabled={busy}>
                {busy ? 'Working…' : (confirmLabel ?? label)}
              </button>
            </div>
          </form>
        )}
      </dialog>
    </>
  );
}

export function MessageField() {
  const id = useId();
  return (
    <p className="field">
      <label htmlFor={id}>Message (optional)</label>
      <input id={id} name="message" type="text" autoComplete="off" />
    </p>
  );
}

export function NumberField({ name, label, defaultValue, min = 0 }: { name: string; label: string; defaultValue?: number; min?: number }) {
  const id = useId();
  return (
    <p className="field">
      <label htmlFor={id}>{label}</label>
      <input id={id} name={name} type="number" min={min} step={1} required defaultValue={defaultValue} inputMode="numeric" />
    </p>
  );
}

export function CheckField({ name, label }: { name: string; label: string }) {
  const id = useId();
  return (
    <p className="field field-check">
      <input id={id} name={name} type="checkbox" />
      <label htmlFor={id}>{label}</label>
    </p>
  );
}

export function formMessage(form: FormData): string | undefined {
  const m = String(form.get('message') ?? '').trim();
  return m === '' ? undefined : m;
}

export function DefList({ items }: { items: [ReactNode, ReactNode][] }) {
  return (
    <dl className="deflist">
      {items.map(([k, v], i) => (
        <div key={i}>
          <dt>{k}</dt>
          <dd>{v}</dd>
        </div>
      ))}
    </dl>
  );
}
