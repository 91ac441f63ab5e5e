// The shell: navigation, the shared time window, the token prompt, and the view for the path.
import { useMemo, useState } from "preact/hooks";
import { type ApiError, storedToken, storeToken } from "./api";
import { Link } from "./common";
import { AuthContext, useTick, useTokenVersion } from "./hooks";
import { carryRange, type Location, navigate, useLocation, withParams } from "./router";
import {
  DEFAULT_RANGE,
  fromLocalInput,
  RANGES,
  REFRESH,
  refreshSeconds,
  toLocalInput,
  windowOf,
} from "./timerange";
import { FunctionHealthView } from "./views/health";
import { IssuesView, IssueView } from "./views/issues";
import { MapView } from "./views/map";
import { RulesView } from "./views/rules";
import { TopView } from "./views/top";
import { ServicesView } from "./views/services";
import { SpansView } from "./views/spans";
import { TraceView } from "./views/trace";
import { TransactionView } from "./views/transaction";
import { TransactionsView } from "./views/transactions";

function TokenForm(props: { error: ApiError; onToken: (token: string) => void }) {
  const [value, setValue] = useState("");
  const wrongKind = props.error.status === 403;
  return (
    <section class="token-gate" data-testid="token-gate" aria-labelledby="token-title">
      <h1 id="token-title">{wrongKind ? "This token cannot read traces" : "A read token is needed"}</h1>
      <p role="alert">
        The collector answered <code>HTTP {props.error.status}</code>: <span>{props.error.detail}</span>
      </p>
      <form
        onSubmit={(event) => {
          event.preventDefault();
          if (value.trim()) props.onToken(value.trim());
        }}
      >
        <label>
          <span>Read token</span>
          <input
            name="token"
            type="password"
            autocomplete="off"
            spellcheck={false}
            placeholder="ht_read_…"
            value={value}
            onInput={(e) => setValue((e.currentTarget as HTMLInputElement).value)}
          />
        </label>
        <button type="submit" class="primary">
          Use this token
        </button>
      </form>
      <p class="muted">
        <code>hoptrace project create NAME</code> prints a project's read token. It is kept in this browser
        (localStorage) and sent as <code>Authorization: Bearer</code> with every API call. A link may also carry it
        once as <code>?token=…</code>.
      </p>
    </section>
  );
}

function TimePicker(props: { location: Location; onRefresh: () => void }) {
  const { location } = props;
  const custom = location.params.has("from");
  const [editing, setEditing] = useState(custom);
  const now = Date.now();
  const win = windowOf(location, now);
  const [from, setFrom] = useState(toLocalInput(win.from));
  const [to, setTo] = useState(toLocalInput(win.to));
  return (
    <div class="timepicker" role="group" aria-label="Time window">
      <label>
        <span class="sr-only">Time range</span>
        <select
          name="range"
          value={editing ? "custom" : location.params.get("range") || DEFAULT_RANGE}
          onChange={(e) => {
            const key = (e.currentTarget as HTMLSelectElement).value;
            if (key === "custom") {
              setEditing(true);
              return;
            }
            setEditing(false);
            navigate(withParams(location, { range: key, from: null, to: null }));
          }}
        >
          {RANGES.map((r) => (
            <option value={r.key} key={r.key}>
              {r.label}
            </option>
          ))}
          <option value="custom">Custom…</option>
        </select>
      </label>
      {editing ? (
        <form
          class="custom-range"
          onSubmit={(event) => {
            event.preventDefault();
            const a = fromLocalInput(from);
            const b = fromLocalInput(to);
            if (a === null || b === null || a >= b) return;
            navigate(withParams(location, { range: null, from: String(a), to: String(b) }));
          }}
        >
          <label>
            <span>From</span>
            <input type="datetime-local" name="from" value={from} onInput={(e) => setFrom(e.currentTarget.value)} />
          </label>
          <label>
            <span>To</span>
            <input type="datetime-local" name="to" value={to} onInput={(e) => setTo(e.currentTarget.value)} />
          </label>
          <button type="submit">Apply</button>
        </form>
      ) : null}
      <label>
        <span class="sr-only">Auto-refresh</span>
        <select
          name="refresh"
          value={location.params.get("refresh") || ""}
          onChange={(e) => navigate(withParams(location, { refresh: (e.currentTarget as HTMLSelectElement).value }), true)}
        >
          {REFRESH.map((r) => (
            <option value={r.key} key={r.key}>
              {r.label}
            </option>
          ))}
        </select>
      </label>
      <button type="button" onClick={props.onRefresh} title="Reload the data of this view">
        Refresh
      </button>
    </div>
  );
}

const NAV = [
  { path: "/map", label: "Service map" },
  { path: "/transactions", label: "Transactions" },
  { path: "/spans", label: "Spans" },
  { path: "/services", label: "Services" },
  { path: "/issues", label: "Issues" },
  { path: "/top", label: "Top" },
  { path: "/rules", label: "Rules" },
];

function route(location: Location, props: { window: ReturnType<typeof windowOf>; tick: number }) {
  const path = location.path.replace(/\/+$/, "") || "/";
  const common = { location, window: props.window, tick: props.tick };
  if (path === "/" || path === "/map") return <MapView {...common} />;
  if (path === "/transactions") return <TransactionsView {...common} />;
  if (path === "/spans") return <SpansView {...common} />;
  if (path === "/services") return <ServicesView {...common} />;
  if (path === "/issues") return <IssuesView {...common} />;
  if (path === "/top") return <TopView {...common} />;
  if (path === "/rules") return <RulesView location={location} tick={props.tick} />;
  const issue = path.match(/^\/issues\/([^/]+)$/);
  if (issue) return <IssueView key={issue[1]} {...common} id={decodeURIComponent(issue[1])} />;
  const health = path.match(/^\/functions\/([^/]+)$/);
  if (health) return <FunctionHealthView key={health[1]} {...common} name={decodeURIComponent(health[1])} />;
  const trace = path.match(/^\/traces\/([^/]+)$/);
  if (trace) return <TraceView key={trace[1]} location={location} traceId={decodeURIComponent(trace[1])} />;
  const txn = path.match(/^\/transactions\/([^/]+)$/);
  if (txn) return <TransactionView key={txn[1]} {...common} id={decodeURIComponent(txn[1])} />;
  return (
    <div class="view">
      <h1>No such page</h1>
      <p>
        Nothing lives at <code>{location.path}</code>. <Link href="/map">Open the service map</Link>.
      </p>
    </div>
  );
}

export function App() {
  const location = useLocation();
  const [authError, setAuthError] = useState<ApiError | null>(null);
  const [manual, setManual] = useState(0);
  const timerTick = useTick(refreshSeconds(location));
  const tick = timerTick + manual;
  useTokenVersion();
  // Relative ranges are evaluated once per tick or address change, not on every render.
  const search = location.params.toString();
  const window = useMemo(() => windowOf(location, Date.now()), [tick, search]);
  const current = location.path === "/" ? "/map" : location.path;
  return (
    <AuthContext.Provider value={(error) => setAuthError((prev) => prev ?? error)}>
      <a class="skip" href="#main">
        Skip to content
      </a>
      <header class="top">
        <Link href={carryRange(location, "/map")} class="brand">
          hoptrace
        </Link>
        <nav aria-label="Views">
          {NAV.map((item) => (
            <Link
              key={item.path}
              href={carryRange(location, item.path)}
              class={current === item.path || current.startsWith(`${item.path}/`) ? "active" : ""}
            >
              {item.label}
            </Link>
          ))}
        </nav>
        <TimePicker location={location} onRefresh={() => setManual((m) => m + 1)} />
        {storedToken() ? (
          <button
            type="button"
            class="forget"
            onClick={() => {
              storeToken(null);
              setManual((m) => m + 1);
            }}
          >
            Forget token
          </button>
        ) : null}
      </header>
      <main id="main" tabIndex={-1}>
        {authError ? (
          <TokenForm
            error={authError}
            onToken={(token) => {
              storeToken(token);
              setAuthError(null);
            }}
          />
        ) : (
          route(location, { window, tick })
        )}
      </main>
    </AuthContext.Provider>
  );
}
