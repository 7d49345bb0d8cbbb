import { useEffect, useRef, useState } from "react";
import { Link, Navigate, useNavigate, useSearchParams } from "react-router-dom";
import { Alert, Button, Card, Form, Input, Typography } from "antd";
import { call, register, signIn, signInWithDirectory, signInWithSso, ssoStartUrl } from "../lib/api";
import { useUser } from "../lib/auth";
import { ProblemAlert } from "../components/ProblemAlert";

/** Only a page of this console: `next` is resolved as the browser would and must stay on this origin. */
export function safeNext(next: string | null, origin = window.location.origin): string {
  if (!next) return "/";
  try {
    const url = new URL(next, origin);
    return url.origin === origin ? url.pathname + url.search + url.hash : "/";
  } catch {
    return "/";
  }
}

export function Frame({ title, children }: { title: string; children: React.ReactNode }) {
  return (
    <main style={{ minHeight: "100vh", display: "grid", placeItems: "center", background: "#f3f5f8", padding: 16 }}>
      <Card style={{ width: 380, maxWidth: "100%" }}>
        <Typography.Title level={1} style={{ fontSize: 26, marginTop: 0 }}>
          Stoa
        </Typography.Title>
        <Typography.Title level={2} style={{ fontSize: 18, marginTop: 0 }}>
          {title}
        </Typography.Title>
        {children}
      </Card>
    </main>
  );
}

/** A form's submission: busy while it runs, the problem kept, the next page after. */
function useSubmit(next: string) {
  const navigate = useNavigate();
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const submit = async (work: () => Promise<void>) => {
    setBusy(true);
    setError(null);
    try {
      await work();
      navigate(next, { replace: true });
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };
  return { error, busy, submit };
}

export function SignIn() {
  const [params] = useSearchParams();
  const user = useUser();
  const next = safeNext(params.get("next"));
  const { error, busy, submit } = useSubmit(next);
  // With a directory configured, a second way in: its account name and password.
  const [ldap, setLdap] = useState(false);
  const [directory, setDirectory] = useState(false);
  const [providers, setProviders] = useState<SsoProvider[]>([]);
  useEffect(() => {
    call<{ ldap: boolean; sso?: SsoProvider[] }>("GET", "/api/v1/auth/methods", { anonymous: true })
      .then((m) => {
        setLdap(m.ldap);
        setProviders(m.sso ?? []);
      })
      .catch(() => setLdap(false));
  }, []);
  if (user) return <Navigate to={next} replace />;
  if (directory) {
    return (
      <Frame title="Sign in with your directory account">
        <ProblemAlert error={error} />
        <Form
          layout="vertical"
          onFinish={(v: { login: string; password: string }) => submit(() => signInWithDirectory(v.login, v.password))}
        >
          <Form.Item label="Account" name="login" rules={[{ required: true, message: "Your directory account" }]}>
            <Input autoComplete="username" autoFocus />
          </Form.Item>
          <Form.Item label="Password" name="password" rules={[{ required: true, message: "Your password" }]}>
            <Input.Password autoComplete="current-password" />
          </Form.Item>
          <Button type="primary" htmlType="submit" block loading={busy}>
            Sign in
          </Button>
        </Form>
        <p style={{ marginTop: 16, marginBottom: 0 }}>
          <Button type="link" style={{ padding: 0 }} onClick={() => setDirectory(false)}>
            Sign in with e-mail and password instead
          </Button>
        </p>
      </Frame>
    );
  }
  return (
    <Frame title="Sign in">
      {params.get("expired") && !error && (
        <Alert type="info" showIcon style={{ marginBottom: 16 }} message="Your session ended. Sign in to go on where you were." />
      )}
      <ProblemAlert error={error} />
      <Form
        layout="vertical"
        onFinish={(v: { email: string; password: string }) => submit(() => signIn(v.email, v.password))}
      >
        <Form.Item label="E-mail" name="email" rules={[{ required: true, message: "Your e-mail address" }]}>
          <Input type="email" autoComplete="username" autoFocus />
        </Form.Item>
        <Form.Item label="Password" name="password" rules={[{ required: true, message: "Your password" }]}>
          <Input.Password autoComplete="current-password" />
        </Form.Item>
        <Button type="primary" htmlType="submit" block loading={busy}>
          Sign in
        </Button>
      </Form>
      {providers.map((p) => (
        <Button
          key={p.name}
          block
          style={{ marginTop: 8 }}
          onClick={() => window.location.assign(ssoStartUrl(p.name, next))}
        >
          Sign in with {p.display_name}
        </Button>
      ))}
      <p style={{ marginTop: 16, marginBottom: 0 }}>
        <Link to="/forgot-password">Forgot your password?</Link>
      </p>
      {ldap && (
        <p style={{ marginTop: 8, marginBottom: 0 }}>
          <Button type="link" style={{ padding: 0 }} onClick={() => setDirectory(true)}>
            Sign in with your directory account
          </Button>
        </p>
      )}
      <p style={{ marginTop: 8, marginBottom: 0 }}>
        New here? <Link to={`/register${next !== "/" ? `?next=${encodeURIComponent(next)}` : ""}`}>Create an account</Link>
      </p>
    </Frame>
  );
}

type SsoProvider = { name: string; display_name: string };

/** Where a single sign-on lands: the one-time code (or the refusal) is in the URL's fragment. */
export function SsoLanding() {
  const navigate = useNavigate();
  const [outcome] = useState(() => {
    const fragment = new URLSearchParams(window.location.hash.slice(1));
    return {
      handoff: fragment.get("handoff"),
      next: safeNext(fragment.get("next")),
      error: fragment.get("error"),
      description: fragment.get("error_description"),
    };
  });
  const [error, setError] = useState<unknown>(null);
  // The code works once: traded once, even when effects run twice.
  const started = useRef(false);
  useEffect(() => {
    // The code is for this page only: out of the address bar and the history at once.
    window.history.replaceState(null, "", window.location.pathname);
    if (!outcome.handoff || started.current) return;
    started.current = true;
    signInWithSso(outcome.handoff)
      .then(() => navigate(outcome.next, { replace: true }))
      .catch(setError);
  }, [outcome, navigate]);
  if (outcome.handoff && !error) {
    return (
      <Frame title="Signing in…">
        <Typography.Paragraph>One moment.</Typography.Paragraph>
      </Frame>
    );
  }
  return (
    <Frame title="Single sign-on did not finish">
      {error ? (
        <ProblemAlert error={error} />
      ) : (
        <Alert
          type="error"
          showIcon
          style={{ marginBottom: 16 }}
          message={outcome.description ?? "The sign-in was not completed."}
          description={outcome.error ? `(${outcome.error})` : undefined}
        />
      )}
      <Link to="/signin">Back to sign in</Link>
    </Frame>
  );
}

export function Register() {
  const [params] = useSearchParams();
  const user = useUser();
  const next = safeNext(params.get("next"));
  const { error, busy, submit } = useSubmit(next);
  if (user) return <Navigate to={next} replace />;
  return (
    <Frame title="Create an account">
      <ProblemAlert error={error} />
      <Form
        layout="vertical"
        onFinish={(v: { name: string; email: string; password: string }) => submit(() => register(v.email, v.password, v.name))}
      >
        <Form.Item label="Name" name="name" rules={[{ required: true, message: "The name others see" }]}>
          <Input autoComplete="name" autoFocus />
        </Form.Item>
        <Form.Item label="E-mail" name="email" rules={[{ required: true, message: "Your e-mail address" }]}>
          <Input type="email" autoComplete="username" />
        </Form.Item>
        <Form.Item
          label="Password"
          name="password"
          rules={[{ required: true, min: 8, message: "At least 8 characters" }]}
        >
          <Input.Password autoComplete="new-password" />
        </Form.Item>
        <Button type="primary" htmlType="submit" block loading={busy}>
          Create account
        </Button>
      </Form>
      <p style={{ marginTop: 16, marginBottom: 0 }}>
        Have an account? <Link to={`/signin${next !== "/" ? `?next=${encodeURIComponent(next)}` : ""}`}>Sign in</Link>
      </p>
    </Frame>
  );
}
