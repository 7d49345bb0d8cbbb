import { useCallback, useEffect, useRef, useState } from "react";
import type { Channel } from "phoenix";
import { channel, leave } from "./realtime";

export interface Loaded<T> {
  data: T | undefined;
  error: unknown;
  loading: boolean;
  reload: () => void;
}

/** Loads `load()` when `deps` change; `reload()` loads again (for live updates). */
export function useLoad<T>(load: () => Promise<T>, deps: unknown[]): Loaded<T> {
  const [data, setData] = useState<T>();
  const [error, setError] = useState<unknown>(null);
  const [loading, setLoading] = useState(true);
  const [tick, setTick] = useState(0);
  const generation = useRef(0);
  const depsKey = JSON.stringify(deps);
  const loadedFor = useRef(depsKey);
  useEffect(() => {
    const mine = ++generation.current;
    // Another id: what was loaded for the previous one must not show meanwhile.
    if (loadedFor.current !== depsKey) {
      loadedFor.current = depsKey;
      setData(undefined);
      setError(null);
    }
    setLoading(true);
    load().then(
      (d) => {
        if (mine !== generation.current) return;
        setData(d);
        setError(null);
        setLoading(false);
      },
      (e) => {
        if (mine !== generation.current) return;
        setError(e);
        setLoading(false);
      },
    );
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [...deps, tick]);
  const reload = useCallback(() => setTick((t) => t + 1), []);
  return { data, error, loading, reload };
}

/**
 * Joins `topic` while mounted and calls `on[event]` for what arrives. Handlers may change
 * between renders without a rejoin.
 */
export function useChannel(
  topic: string | null,
  on: Record<string, (payload: any) => void>,
  params: () => Record<string, unknown> = () => ({}),
  onJoin?: (reply: any) => void,
  onRefused?: (reply: any) => void,
): Channel | null {
  const handlers = useRef(on);
  handlers.current = on;
  const paramsRef = useRef(params);
  paramsRef.current = params;
  const joinRef = useRef(onJoin);
  joinRef.current = onJoin;
  const refusedRef = useRef(onRefused);
  refusedRef.current = onRefused;
  const [ch, setCh] = useState<Channel | null>(null);
  useEffect(() => {
    if (!topic) return;
    const c = channel(topic, () => paramsRef.current());
    for (const event of Object.keys(handlers.current)) {
      c.on(event, (p) => handlers.current[event]?.(p));
    }
    c.join()
      .receive("ok", (reply) => joinRef.current?.(reply))
      // Refused (not a member any more, deleted): retrying would only be refused again.
      .receive("error", (reply) => {
        leave(c);
        refusedRef.current?.(reply);
      });
    setCh(c);
    return () => {
      leave(c);
      setCh(null);
    };
    // The events listened to are fixed per topic.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [topic]);
  return ch;
}
