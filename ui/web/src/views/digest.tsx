// The weekly digest of the top lists (GET/PUT/DELETE /api/v1/digest, POST /api/v1/digest/send),
// on the rules page: which slack or webhook channel, which UTC weekday and hour. Changes need the
// admin token typed on that page.
import { useState } from "preact/hooks";
import { type ApiError, apiSend } from "../api";
import { ErrorBox } from "../common";
import { useApi } from "../hooks";

interface Digest {
  configured: boolean;
  channel_id?: number;
  weekday?: number;
  hour?: number;
  limit?: number;
  enabled?: boolean;
  last_sent_slot?: string | null;
}

const WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"];

export function DigestPanel(props: { channels: { id: number; name: string; type: string }[]; token: string; tick: string }) {
  const [version, setVersion] = useState(0);
  const current = useApi<Digest>("/digest", {}, `${props.tick}:${version}`);
  const usable = props.channels.filter((c) => c.type === "slack" || c.type === "webhook");
  const d = current.data;
  const [channel, setChannel] = useState("");
  const [weekday, setWeekday] = useState("");
  const [hour, setHour] = useState("");
  const [error, setError] = useState<ApiError | null>(null);
  const [note, setNote] = useState("");
  const chosen = channel || String(d?.channel_id ?? usable[0]?.id ?? "");
  const day = weekday || String(d?.weekday ?? 0);
  const at = hour || String(d?.hour ?? 8);
  const done = (text: string) => () => {
    setError(null);
    setNote(text);
    setVersion((v) => v + 1);
  };
  const fail = (err: ApiError) => {
    setNote("");
    setError(err);
  };
  return (
    <section data-testid="digest">
      <h2>Weekly digest</h2>
      {current.error ? <ErrorBox error={current.error} what="the digest" /> : null}
      <p class="muted" data-testid="digest-state">
        {d?.configured
          ? `Every ${WEEKDAYS[d.weekday ?? 0]} at ${String(d.hour).padStart(2, "0")}:00 UTC to channel #${d.channel_id}${d.enabled ? "" : " (paused)"}: the top lists of the week before, against the week before that.`
          : "Not set: the top lists (slowest, most called, most failing) can go weekly to a Slack or webhook channel."}
      </p>
      {usable.length ? (
        <form
          class="filters"
          onSubmit={(e) => {
            e.preventDefault();
            const body = { channel_id: Number(chosen), weekday: Number(day), hour: Number(at), limit: d?.limit ?? 5, enabled: true };
            apiSend("PUT", "/digest", body, props.token).then(done("Saved."), fail);
          }}
        >
          <label>
            <span>Channel</span>
            <select name="digest-channel" value={chosen} onChange={(e) => setChannel(e.currentTarget.value)}>
              {usable.map((c) => (
                <option key={c.id} value={String(c.id)}>
                  {c.name} ({c.type})
                </option>
              ))}
            </select>
          </label>
          <label>
            <span>Weekday (UTC)</span>
            <select name="digest-weekday" value={day} onChange={(e) => setWeekday(e.currentTarget.value)}>
              {WEEKDAYS.map((w, i) => (
                <option key={w} value={String(i)}>
                  {w}
                </option>
              ))}
            </select>
          </label>
          <label>
            <span>Hour (UTC)</span>
            <input name="digest-hour" type="number" min={0} max={23} value={at} onInput={(e) => setHour(e.currentTarget.value)} />
          </label>
          <div class="filter-actions">
            <button type="submit" class="primary">
              Save digest
            </button>
            <button type="button" disabled={!d?.configured} onClick={() => apiSend("POST", "/digest/send", {}, props.token).then(done("Queued: the last 7 days."), fail)}>
              Send now
            </button>
            <button type="button" disabled={!d?.configured} onClick={() => apiSend("DELETE", "/digest", undefined, props.token).then(done("Stopped."), fail)}>
              Stop
            </button>
          </div>
        </form>
      ) : (
        <p class="muted">Add a Slack or webhook channel first.</p>
      )}
      {note ? (
        <p class="muted" role="status" data-testid="digest-note">
          {note}
        </p>
      ) : null}
      {error ? (
        <p class="api-error" role="alert" data-testid="digest-error">
          The collector refused: <code>HTTP {error.status || "–"}</code> <span class="error-detail">{error.detail}</span>
        </p>
      ) : null}
    </section>
  );
}
