import { lazy, Suspense, useEffect } from "react";
import { Navigate, Route, Routes, useLocation, useNavigate } from "react-router-dom";
import { Spin } from "antd";
import { useUser } from "./lib/auth";
import { whenSignedOut } from "./lib/api";
import { SignIn, Register, SsoLanding } from "./pages/SignIn";
import { Boundary } from "./components/Boundary";

// Everything behind sign-in is loaded on demand: the sign-in page carries only what it uses.
const Shell = lazy(() => import("./pages/Shell"));
const Runbooks = lazy(() => import("./pages/Runbooks"));
// The pages the links in mail open.
const VerifyEmail = lazy(() => import("./pages/Links").then((m) => ({ default: m.VerifyEmail })));
const ForgotPassword = lazy(() => import("./pages/Links").then((m) => ({ default: m.ForgotPassword })));
const ResetPassword = lazy(() => import("./pages/Links").then((m) => ({ default: m.ResetPassword })));

function Loading() {
  return (
    <div style={{ display: "grid", placeItems: "center", height: "60vh" }}>
      <Spin size="large" aria-label="Loading" />
    </div>
  );
}

/** Pages behind sign-in: a visitor without a session goes to sign-in and comes back after. */
function RequireUser() {
  const user = useUser();
  const location = useLocation();
  if (!user) {
    const next = location.pathname + location.search;
    return <Navigate to={`/signin?next=${encodeURIComponent(next)}`} replace />;
  }
  return (
    <Suspense fallback={<Loading />}>
      <Shell />
    </Suspense>
  );
}

export function App() {
  const navigate = useNavigate();
  const location = useLocation();
  useEffect(() => {
    whenSignedOut(() => {
      if (!location.pathname.startsWith("/signin")) {
        navigate(`/signin?next=${encodeURIComponent(location.pathname + location.search)}&expired=1`, { replace: true });
      }
    });
  }, [navigate, location]);
  return (
    <Boundary>
    <Routes>
      <Route path="/signin" element={<SignIn />} />
      <Route path="/signin/sso" element={<SsoLanding />} />
      <Route path="/register" element={<Register />} />
      <Route path="/verify-email" element={<Suspense fallback={<Loading />}><VerifyEmail /></Suspense>} />
      <Route path="/forgot-password" element={<Suspense fallback={<Loading />}><ForgotPassword /></Suspense>} />
      <Route path="/reset-password" element={<Suspense fallback={<Loading />}><ResetPassword /></Suspense>} />
      {/* Public: the page an alert links to must open for whoever is on call. */}
      <Route
        path="/runbooks"
        element={
          <Suspense fallback={<Loading />}>
            <Runbooks />
          </Suspense>
        }
      />
      <Route path="/*" element={<RequireUser />} />
    </Routes>
    </Boundary>
  );
}

export function Fallback() {
  return <Loading />;
}
