import { Alert } from "antd";
import { describe } from "../lib/problem";

/** An API problem as a person can act on it: title, detail, the fields at fault, when to retry. */
export function ProblemAlert({ error, onClose }: { error: unknown; onClose?: () => void }) {
  if (!error) return null;
  const d = describe(error);
  return (
    <Alert
      type="error"
      showIcon
      role="alert"
      closable={onClose !== undefined}
      onClose={onClose}
      message={d.title}
      description={
        <>
          {d.detail && <div>{d.detail}</div>}
          {d.fields.length > 0 && (
            <ul style={{ margin: 0, paddingLeft: 18 }}>
              {d.fields.map((f) => (
                <li key={f.field + f.message}>
                  <strong>{f.field}</strong>: {f.message}
                </li>
              ))}
            </ul>
          )}
          {d.retry && <div>{d.retry}</div>}
        </>
      }
      style={{ marginBottom: 16 }}
    />
  );
}
