import { createContext, useContext, useEffect, useState, type ReactNode } from "react";
import { session, type Tokens } from "./api";
import type { User } from "./types";

const AuthContext = createContext<Tokens | null>(null);

export function AuthProvider({ children }: { children: ReactNode }) {
  const [tokens, setTokens] = useState<Tokens | null>(() => session.current());
  useEffect(() => {
    session.start();
    return session.subscribe(setTokens);
  }, []);
  return <AuthContext.Provider value={tokens}>{children}</AuthContext.Provider>;
}

/** The signed-in user, or null. */
export function useUser(): User | null {
  return useContext(AuthContext)?.user ?? null;
}
