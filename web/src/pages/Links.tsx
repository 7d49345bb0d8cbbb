import { useEffect, useRef, useState } from "react";
import { Link, useNavigate, useSearchParams } from "react-router-dom";
import { Alert, Button, Form, Input, Spin, Typography } from "antd";
import { api, call } from "../lib/api";
import type { Member } from "../lib/types";
import { ProblemAlert } from "../components/ProblemAlert";
import { Frame } from "./SignIn";

// The pages the links in Stoa's mail open: a link's token is only ever sent to the API by
// a script on the page, so a mail scanner that fetches the link spends nothing.

/** `/verify-email?token=…`: proves the address as soon as the page opens. */
export function VerifyEmail() {
  const [params] = useSearchParams();
  const token = params.get("token") ?? "";
  const [state, setState] = useState<"busy" | "done" | unknown>("busy");
  const sent = useRef(false);
  useEffect(() => {
    if (sent.current) return;
    sent.current = true;
    call("POST", "/api/v1/auth/verify-email", { body: { token }, anonymous: true })
      .then(() => setState("done"))
      .catch((e) => setState(e));
  }, [token]);
  return (
    <Frame title="Confirm your e-mail address">
      {state === "busy" && <Spin aria-label="Confirming" />}
      {state === "done" && (
        <Alert type="success" showIcon role="status" message="Your address is confirmed. People can now add you to their workspaces by it." />
      )}
      {state !== "busy" && state !== "done" && <ProblemAlert error={state} />}
      <p style={{ marginTop: 16, marginBottom: 0 }}>
        <Link to="/">Go to Stoa</Link>
      </p>
    </Frame>
  );
}

/** `/forgot-password`: asks for a reset link; the answer never says whether the address has an account. */
export function ForgotPassword() {
  const [error, setError] = useState<unknown>(null);
  const [sent, setSent] = useState(false);
  const [busy, setBusy] = useState(false);
  return (
    <Frame title="Reset your password">
      <ProblemAlert error={error} />
      {sent ? (
        <Alert
          type="success"
          showIcon
          role="status"
          message="If an account has this address, a link to reset its password is on its way. It works for 30 minutes."
        />
      ) : (
        <Form
          layout="vertical"
          onFinish={async (v: { email: string }) => {
            setBusy(true);
            setError(null);
            try {
              await call("POST", "/api/v1/auth/password-reset", { body: { email: v.email }, anonymous: true });
              setSent(true);
            } catch (e) {
              setError(e);
            } finally {
              setBusy(false);
            }
          }}
        >
          <Form.Item label="E-mail" name="email" rules={[{ required: true, message: "Your e-mail address" }]}>
            <Input type="email" autoComplete="username" autoFocus />
          </Form.Item>
          <Button type="primary" htmlType="submit" block loading={busy}>
            Mail me a link
          </Button>
        </Form>
      )}
      <p style={{ marginTop: 16, marginBottom: 0 }}>
        <Link to="/signin">Back to sign-in</Link>
      </p>
    </Frame>
  );
}

/** `/reset-password?token=…`: a new password; every sign-in of the account ends with it. */
export function ResetPassword() {
  const [params] = useSearchParams();
  const token = params.get("token") ?? "";
  const [error, setError] = useState<unknown>(null);
  const [done, setDone] = useState(false);
  const [busy, setBusy] = useState(false);
  return (
    <Frame title="Choose a new password">
      <ProblemAlert error={error} />
      {done ? (
        <Alert type="success" showIcon role="status" message="Your password is set, and every sign-in of your account has ended." />
      ) : (
        <Form
          layout="vertical"
          onFinish={async (v: { password: string }) => {
            setBusy(true);
            setError(null);
            try {
              await call("POST", "/api/v1/auth/password-reset/confirm", {
                body: { token, new_password: v.password },
                anonymous: true,
              });
              setDone(true);
            } catch (e) {
              setError(e);
            } finally {
              setBusy(false);
            }
          }}
        >
          <Form.Item label="New password" name="password" rules={[{ required: true, min: 8, message: "At least 8 characters" }]}>
            <Input.Password autoComplete="new-password" autoFocus />
          </Form.Item>
          <Button type="primary" htmlType="submit" block loading={busy}>
            Set password
          </Button>
        </Form>
      )}
      <p style={{ marginTop: 16, marginBottom: 0 }}>
        <Link to="/signin">Sign in</Link>
      </p>
    </Frame>
  );
}

/** `/invitations/accept?token=…`, signed in: joins the workspace and opens it. */
export function AcceptInvitation() {
  const [params] = useSearchParams();
  const token = params.get("token") ?? "";
  const navigate = useNavigate();
  const [error, setError] = useState<unknown>(null);
  const sent = useRef(false);
  useEffect(() => {
    if (sent.current) return;
    sent.current = true;
    api
      .post<Member>("/api/v1/me/invitations/accept", { token })
      .then((m) => navigate(`/w/${m.workspace_id}`, { replace: true }))
      .catch(setError);
  }, [token, navigate]);
  return (
    <div style={{ maxWidth: 560 }}>
      <Typography.Title level={2}>Invitation</Typography.Title>
      {error ? <ProblemAlert error={error} /> : <Spin aria-label="Joining the workspace" />}
    </div>
  );
}
