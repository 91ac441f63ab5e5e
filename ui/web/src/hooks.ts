// Data loading: one hook that fetches from the API, aborts stale requests, refetches when the
// token changes or on a timer, and reports 401/403 to the app so it can ask for a token.
import { createContext } from "preact";
import { useContext, useEffect, useState } from "preact/hooks";
import { ApiError, apiGet, onTokenChange, type Params } from "./api";

export interface Loaded<T> {
  data: T | null;
  error: ApiError | null;
  loading: boolean;
}

/** Set by the app: called when the API wants a token. */
export const AuthContext = createContext<(error: ApiError) => void>(() => undefined);

export function useTokenVersion(): number {
  const [version, setVersion] = useState(0);
  useEffect(() => onTokenChange(() => setVersion((v) => v + 1)), []);
  return version;
}

export function useTick(seconds: number): number {
  const [tick, setTick] = useState(0);
  useEffect(() => {
    if (!seconds) return undefined;
    const timer = window.setInterval(() => setTick((t) => t + 1), seconds * 1000);
    return () => window.clearInterval(timer);
  }, [seconds]);
  return tick;
}

/** GET path?params; ``path`` null means "nothing to load yet". ``key`` forces a refetch when it changes. */
export function useApi<T>(path: string | null, params: Params = {}, key: unknown = 0): Loaded<T> {
  const reportAuth = useContext(AuthContext);
  const tokenVersion = useTokenVersion();
  const [state, setState] = useState<Loaded<T>>({ data: null, error: null, loading: path !== null });
  const paramKey = JSON.stringify(params);
  useEffect(() => {
    if (path === null) {
      setState({ data: null, error: null, loading: false });
      return undefined;
    }
    const controller = new AbortController();
    setState((s) => ({ ...s, loading: true }));
    apiGet<T>(path, params, controller.signal).then(
      (data) => setState({ data, error: null, loading: false }),
      (error: unknown) => {
        if (controller.signal.aborted) return;
        const apiError = error instanceof ApiError ? error : new ApiError(0, path, String(error));
        if (apiError.needsToken) reportAuth(apiError);
        setState({ data: null, error: apiError, loading: false });
      },
    );
    return () => controller.abort();
  }, [path, paramKey, key, tokenVersion]);
  return state;
}
