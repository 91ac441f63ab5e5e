// The only way the UI talks to the collector: GET /api/v1/... with the read token, if any.
// Every answer that is not 2xx becomes an ApiError carrying the API's own words.

const TOKEN_KEY = "hoptrace.token";

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly path: string,
    readonly detail: string,
  ) {
    super(`${status} ${detail}`);
  }

  /** The collector wants a (different) token: the UI asks for one. */
  get needsToken(): boolean {
    return this.status === 401 || this.status === 403;
  }
}

export function storedToken(): string | null {
  try {
    return localStorage.getItem(TOKEN_KEY);
  } catch {
    return null;
  }
}

export function storeToken(token: string | null): void {
  try {
    if (token) localStorage.setItem(TOKEN_KEY, token);
    else localStorage.removeItem(TOKEN_KEY);
  } catch {
    // Private mode without storage: the token lives for this page only.
  }
  memoryToken = token;
  tokenListeners.forEach((fn) => fn());
}

let memoryToken: string | null = null;
const tokenListeners = new Set<() => void>();

export function onTokenChange(fn: () => void): () => void {
  tokenListeners.add(fn);
  return () => tokenListeners.delete(fn);
}

/** A link may carry ?token=…: keep it, then take it out of the address bar and history. */
export function adoptTokenFromUrl(): void {
  const url = new URL(window.location.href);
  const token = url.searchParams.get("token");
  if (token) {
    storeToken(token);
    url.searchParams.delete("token");
    window.history.replaceState(null, "", url.pathname + url.search + url.hash);
  }
}

export type Params = Record<string, string | number | undefined | null | string[]>;

export function query(params: Params): string {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value === undefined || value === null || value === "") continue;
    if (Array.isArray(value)) value.forEach((v) => search.append(key, v));
    else search.append(key, String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

function detailOf(body: unknown, fallback: string): string {
  if (body && typeof body === "object" && "detail" in body) {
    const detail = (body as { detail: unknown }).detail;
    if (typeof detail === "string") return detail;
    if (Array.isArray(detail)) {
      // FastAPI validation errors: [{loc: [...], msg: "..."}]
      return detail
        .map((d) => {
          const item = d as { loc?: unknown[]; msg?: string };
          const where = Array.isArray(item.loc) ? item.loc.filter((x) => x !== "query").join(".") : "";
          return where ? `${where}: ${item.msg ?? ""}` : String(item.msg ?? JSON.stringify(d));
        })
        .join("; ");
    }
    return JSON.stringify(detail);
  }
  return fallback;
}

export async function apiGet<T>(path: string, params: Params = {}, signal?: AbortSignal): Promise<T> {
  const url = `/api/v1${path}${query(params)}`;
  const headers: Record<string, string> = { Accept: "application/json" };
  const token = memoryToken ?? storedToken();
  if (token) headers.Authorization = `Bearer ${token}`;
  let response: Response;
  try {
    response = await fetch(url, { headers, signal });
  } catch (err) {
    if (err instanceof DOMException && err.name === "AbortError") throw err;
    throw new ApiError(0, url, `the collector did not answer (${String(err)})`);
  }
  const text = await response.text();
  let body: unknown = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = null;
  }
  if (!response.ok) {
    throw new ApiError(response.status, url, detailOf(body, response.statusText || text.slice(0, 200)));
  }
  if (body === null) throw new ApiError(response.status, url, "the answer was not JSON");
  return body as T;
}

/** POST/PATCH/DELETE with a JSON body. ``token`` overrides the stored one (the rule editor's admin
 * token). Errors come back as ApiError with the API's own words; they are never sent to the token
 * prompt, so a page can show "this token may not" in place. */
export async function apiSend<T>(
  method: "POST" | "PUT" | "PATCH" | "DELETE",
  path: string,
  body?: unknown,
  token?: string | null,
): Promise<T | null> {
  const url = `/api/v1${path}`;
  const headers: Record<string, string> = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const bearer = token || memoryToken || storedToken();
  if (bearer) headers.Authorization = `Bearer ${bearer}`;
  let response: Response;
  try {
    response = await fetch(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (err) {
    throw new ApiError(0, url, `the collector did not answer (${String(err)})`);
  }
  const text = await response.text();
  let parsed: unknown = null;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    parsed = null;
  }
  if (!response.ok) throw new ApiError(response.status, url, detailOf(parsed, response.statusText || text.slice(0, 200)));
  return parsed as T | null;
}
