// Notification rules and channels (GET /api/v1/rules, /channels with the read token; changes need
// an admin token, typed here and kept only in this tab's memory). Channel secrets never come from
// the API: only which are set (secrets_set).
import { useState } from "preact/hooks";
import { type ApiError, apiSend } from "../api";
import { ErrorBox, Loading } from "../common";
import { useApi } from "../hooks";
import type { Location } from "../router";
import { DigestPanel } from "./digest";

interface Channel {
  id: number;
  name: string;
  type: string;
  config: Record<string, unknown>;
  secrets_set: string[];
}

interface Rule {
  id: number;
  name: string;
  channel_id: number;
  threshold: number;
  interval: number;
  bucket: string;
  kinds: string[];
  functions: string[];
  enabled: boolean;
}

const KINDS = ["exception", "http_5xx", "timeout", "error", "warning"];
const BUCKETS = ["minute", "hour", "day"];

// The admin token lives in memory only: a page reload forgets it (it can change every rule).
let adminTokenMemory = "";

interface Draft {
  name: string;
  channel_id: string;
  threshold: string;
  interval: string;
  bucket: string;
  kinds: string[];
  functions: string;
  enabled: boolean;
}

function draftOf(rule: Rule | null, channels: Channel[]): Draft {
  if (!rule) {
    return {
      name: "",
      channel_id: channels.length ? String(channels[0].id) : "",
      threshold: "1",
      interval: "1",
      bucket: "hour",
      kinds: [],
      functions: "",
      enabled: true,
    };
  }
  return {
    name: rule.name,
    channel_id: String(rule.channel_id),
    threshold: String(rule.threshold),
    interval: String(rule.interval),
    bucket: rule.bucket,
    kinds: [...rule.kinds],
    functions: rule.functions.join(", "),
    enabled: rule.enabled,
  };
}

function bodyOf(d: Draft): Record<string, unknown> {
  return {
    name: d.name.trim(),
    channel_id: Number(d.channel_id),
    threshold: Number(d.threshold),
    interval: Number(d.interval),
    bucket: d.bucket,
    kinds: d.kinds,
    functions: d.functions
      .split(",")
      .map((f) => f.trim())
      .filter(Boolean),
    enabled: d.enabled,
  };
}

function WriteError(props: { error: ApiError }) {
  const { error } = props;
  return (
    <p class="api-error" role="alert" data-testid="rule-error">
      The collector refused: <code>HTTP {error.status || "–"}</code> <span class="error-detail">{error.detail}</span>
      {error.status === 401 || error.status === 403 ? (
        <span class="hint"> Changing rules needs the project's admin token (hoptrace project token NAME --kind admin).</span>
      ) : null}
    </p>
  );
}

function RuleForm(props: { rule: Rule | null; channels: Channel[]; token: string; onDone: () => void; onCancel: () => void }) {
  const [draft, setDraft] = useState(() => draftOf(props.rule, props.channels));
  const [error, setError] = useState<ApiError | null>(null);
  const [busy, setBusy] = useState(false);
  const set = (changes: Partial<Draft>) => setDraft((d) => ({ ...d, ...changes }));
  const submit = (event: Event) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    const call = props.rule
      ? apiSend<Rule>("PATCH", `/rules/${props.rule.id}`, bodyOf(draft), props.token)
      : apiSend<Rule>("POST", "/rules", bodyOf(draft), props.token);
    call.then(
      () => {
        setBusy(false);
        props.onDone();
      },
      (err: ApiError) => {
        setBusy(false);
        setError(err);
      },
    );
  };
  return (
    <form class="rule-form filters" onSubmit={submit} aria-label={props.rule ? `Edit rule ${props.rule.name}` : "New rule"} data-testid="rule-form">
      <label>
        <span>Name</span>
        <input name="name" required value={draft.name} onInput={(e) => set({ name: e.currentTarget.value })} />
      </label>
      <label>
        <span>Channel</span>
        <select name="channel_id" value={draft.channel_id} onChange={(e) => set({ channel_id: e.currentTarget.value })}>
          {props.channels.map((c) => (
            <option key={c.id} value={String(c.id)}>
              {c.name} ({c.type})
            </option>
          ))}
        </select>
      </label>
      <label>
        <span>Threshold</span>
        <input name="threshold" type="number" step="1" value={draft.threshold} onInput={(e) => set({ threshold: e.currentTarget.value })} />
      </label>
      <label>
        <span>Interval</span>
        <input name="interval" type="number" min={1} step="1" value={draft.interval} onInput={(e) => set({ interval: e.currentTarget.value })} />
      </label>
      <label>
        <span>Bucket</span>
        <select name="bucket" value={draft.bucket} onChange={(e) => set({ bucket: e.currentTarget.value })}>
          {BUCKETS.map((b) => (
            <option key={b} value={b}>
              {b}
            </option>
          ))}
        </select>
      </label>
      <fieldset class="kinds">
        <legend>Kinds (none: all)</legend>
        {KINDS.map((k) => (
          <label key={k} class="check">
            <input
              type="checkbox"
              name={`kind-${k}`}
              checked={draft.kinds.includes(k)}
              onChange={(e) =>
                set({ kinds: e.currentTarget.checked ? [...draft.kinds, k] : draft.kinds.filter((x) => x !== k) })
              }
            />
            <span>{k}</span>
          </label>
        ))}
      </fieldset>
      <label class="wide">
        <span>Functions (comma-separated; empty: all)</span>
        <input name="functions" value={draft.functions} onInput={(e) => set({ functions: e.currentTarget.value })} />
      </label>
      <label class="check">
        <input type="checkbox" name="enabled" checked={draft.enabled} onChange={(e) => set({ enabled: e.currentTarget.checked })} />
        <span>Enabled</span>
      </label>
      <p class="muted small wide">
        The first occurrence of an issue always notifies; after that, when the count in the current bucket reaches the
        threshold and is a multiple of the interval. A negative threshold: the first occurrence only.
      </p>
      <div class="filter-actions">
        <button type="submit" class="primary" disabled={busy}>
          {props.rule ? "Save rule" : "Create rule"}
        </button>
        <button type="button" onClick={props.onCancel}>
          Cancel
        </button>
      </div>
      {error ? <WriteError error={error} /> : null}
    </form>
  );
}

export function RulesView(props: { location: Location; tick: number }) {
  const [version, setVersion] = useState(0);
  const [token, setToken] = useState(adminTokenMemory);
  const [editing, setEditing] = useState<Rule | "new" | null>(null);
  const [deleteError, setDeleteError] = useState<ApiError | null>(null);
  const key = `${props.tick}:${version}`;
  const channels = useApi<{ channels: Channel[] }>("/channels", {}, key);
  const rules = useApi<{ rules: Rule[] }>("/rules", {}, key);
  const channelList = channels.data?.channels ?? [];
  const byId = new Map(channelList.map((c) => [c.id, c]));
  const reload = () => {
    setEditing(null);
    setVersion((v) => v + 1);
  };
  return (
    <div class="view rules-view">
      <h1>Notification rules</h1>
      <div class="admin-token">
        <label>
          <span>Admin token (for changes; kept in this tab only)</span>
          <input
            name="admin-token"
            type="password"
            autocomplete="off"
            spellcheck={false}
            placeholder="ht_admin_… (empty: the stored read token is sent)"
            value={token}
            onInput={(e) => {
              adminTokenMemory = e.currentTarget.value.trim();
              setToken(adminTokenMemory);
            }}
          />
        </label>
      </div>
      <h2>Channels</h2>
      {channels.error ? <ErrorBox error={channels.error} what="channels" /> : null}
      {channels.loading && !channels.data ? <Loading what="channels" /> : null}
      {channels.data && !channelList.length ? (
        <p class="muted" data-testid="no-channels">
          No channel yet: add one with <code>POST /api/v1/channels</code> (Slack, webhook or GitHub) and an admin token.
        </p>
      ) : null}
      {channelList.length ? (
        <table class="results" data-testid="channels">
          <thead>
            <tr>
              <th scope="col">Id</th>
              <th scope="col">Name</th>
              <th scope="col">Type</th>
              <th scope="col">Settings</th>
              <th scope="col">Secrets</th>
            </tr>
          </thead>
          <tbody>
            {channelList.map((c) => (
              <tr key={c.id} data-testid="channel-row">
                <td class="num">{c.id}</td>
                <td>{c.name}</td>
                <td>
                  <span class="badge">{c.type}</span>
                </td>
                <td>
                  {Object.entries(c.config)
                    .map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`)
                    .join(", ")}
                </td>
                <td>{c.secrets_set.length ? c.secrets_set.map((s) => `${s}: set`).join(", ") : "none"}</td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : null}
      <h2>Rules</h2>
      {rules.error ? <ErrorBox error={rules.error} what="rules" /> : null}
      {rules.loading && !rules.data ? <Loading what="rules" /> : null}
      {rules.data && !rules.data.rules.length ? <p class="muted" data-testid="no-rules">No rule yet.</p> : null}
      {rules.data?.rules.length ? (
        <table class="results" data-testid="rules">
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Channel</th>
              <th scope="col">Threshold</th>
              <th scope="col">Interval</th>
              <th scope="col">Bucket</th>
              <th scope="col">Kinds</th>
              <th scope="col">Functions</th>
              <th scope="col">Enabled</th>
              <th scope="col">
                <span class="sr-only">Actions</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {rules.data.rules.map((r) => (
              <tr key={r.id} data-testid="rule-row">
                <td>{r.name}</td>
                <td>{byId.get(r.channel_id)?.name ?? `#${r.channel_id}`}</td>
                <td class="num">{r.threshold < 0 ? `${r.threshold} (first only)` : r.threshold}</td>
                <td class="num">{r.interval}</td>
                <td>{r.bucket}</td>
                <td>{r.kinds.length ? r.kinds.join(", ") : "all"}</td>
                <td>{r.functions.length ? r.functions.join(", ") : "all"}</td>
                <td>{r.enabled ? "yes" : "no"}</td>
                <td class="nowrap">
                  <button type="button" onClick={() => setEditing(r)} aria-label={`Edit rule ${r.name}`}>
                    Edit
                  </button>{" "}
                  <button
                    type="button"
                    aria-label={`Delete rule ${r.name}`}
                    onClick={() => {
                      if (!window.confirm(`Delete the rule ${r.name}?`)) return;
                      setDeleteError(null);
                      apiSend("DELETE", `/rules/${r.id}`, undefined, token).then(reload, (err: ApiError) => setDeleteError(err));
                    }}
                  >
                    Delete
                  </button>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : null}
      {deleteError ? <WriteError error={deleteError} /> : null}
      {editing ? (
        <RuleForm
          key={editing === "new" ? "new" : editing.id}
          rule={editing === "new" ? null : editing}
          channels={channelList}
          token={token}
          onDone={reload}
          onCancel={() => setEditing(null)}
        />
      ) : (
        <p>
          <button type="button" class="primary" onClick={() => setEditing("new")} disabled={!channelList.length} data-testid="new-rule">
            New rule
          </button>
        </p>
      )}
      <DigestPanel channels={channelList} token={token} tick={key} />
    </div>
  );
}
