// A waterfall of spans on one time axis: for a trace, or across every trace of a transaction,
// grouped per invocation, with the waits between producer and consumer drawn as dwell bars.
import { Fragment } from "preact";
import { ms } from "./format";
import { KILLED_LABELS, killedClass } from "./killed";
import type { Hop, LogRecord, Span } from "./types";

interface Row {
  span: Span;
  depth: number;
}

interface Group {
  title: string;
  subtitle: string;
  rows: Row[];
  start: bigint;
}

const ENTRY_KINDS = new Set(["SERVER", "CONSUMER"]);

export function spanKey(span: Span): string {
  return `${span.trace_id}:${span.span_id}`;
}

/** Parent-before-child order (siblings by start), each span with its depth in its tree. */
export function treeOrder(spans: Span[]): Row[] {
  const keys = new Set(spans.map(spanKey));
  const children = new Map<string, Span[]>();
  const roots: Span[] = [];
  for (const span of spans) {
    const parentKey = span.parent_span_id ? `${span.trace_id}:${span.parent_span_id}` : null;
    if (parentKey && keys.has(parentKey)) {
      const list = children.get(parentKey) ?? [];
      list.push(span);
      children.set(parentKey, list);
    } else {
      roots.push(span);
    }
  }
  const byStart = (a: Span, b: Span) => {
    const d = BigInt(a.start_unix_nano) - BigInt(b.start_unix_nano);
    return d < 0n ? -1 : d > 0n ? 1 : a.name.localeCompare(b.name);
  };
  const out: Row[] = [];
  const seen = new Set<string>();
  const walk = (span: Span, depth: number) => {
    const key = spanKey(span);
    if (seen.has(key)) return;
    seen.add(key);
    out.push({ span, depth });
    for (const child of (children.get(key) ?? []).sort(byStart)) walk(child, depth + 1);
  };
  roots.sort(byStart).forEach((root) => walk(root, 0));
  return out;
}

/** Invocations: a new group starts at every root, entry span (SERVER/CONSUMER) or change of service. */
export function invocationGroups(rows: Row[]): Group[] {
  const groups: Group[] = [];
  const groupOf = new Map<string, Group>();
  const parentKey = (s: Span) => (s.parent_span_id ? `${s.trace_id}:${s.parent_span_id}` : "");
  const spanOf = new Map(rows.map((r) => [spanKey(r.span), r]));
  for (const row of rows) {
    const parent = spanOf.get(parentKey(row.span));
    const starts =
      !parent || ENTRY_KINDS.has(row.span.kind) || parent.span.service !== row.span.service;
    let group = parent && !starts ? groupOf.get(spanKey(parent.span)) : undefined;
    if (!group) {
      const invocation = row.span.attributes["faas.invocation_id"];
      group = {
        title: row.span.service,
        subtitle: invocation ? `invocation ${String(invocation)}` : `trace ${row.span.trace_id.slice(0, 8)}…`,
        rows: [],
        start: BigInt(row.span.start_unix_nano),
      };
      groups.push(group);
    }
    groupOf.set(spanKey(row.span), group);
    const base = group.rows.length ? group.rows[0].depth : row.depth;
    group.rows.push({ span: row.span, depth: Math.max(0, row.depth - base) });
  }
  return groups.sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : 0));
}

/** error (ERROR and FATAL), warn, or info: the colour of a log line. */
export function severityClass(log: LogRecord): string {
  return log.severity_number >= 17 ? "error" : log.severity_number >= 13 ? "warn" : "info";
}

/** Log lines, severity coloured; with ``start`` each says how long after it it was logged, else its clock time. */
export function LogLines(props: { logs: LogRecord[]; start?: bigint; indent?: number }) {
  const { start } = props;
  return (
    <ul class="log-lines" style={{ paddingLeft: `${props.indent ?? 0}px` }}>
      {props.logs.map((log, i) => (
        <li class={`tl-log sev-${severityClass(log)}`} data-testid="log-line" data-severity={severityClass(log)} key={i}>
          <span class="log-sev">{log.severity_text || "LOG"}</span>
          <span class="log-at">
            {start !== undefined ? `+${ms(Number(BigInt(log.time_unix_nano) - start) / 1e6)}` : log.time.slice(11, 23)}
          </span>
          <span class="log-body">{log.body}</span>
        </li>
      ))}
    </ul>
  );
}

/** The log lines under one span, indented like its children. */
function SpanLogs(props: { logs: LogRecord[]; start: bigint; depth: number }) {
  return (
    <li class="tl-logs" data-testid="span-logs">
      <LogLines logs={props.logs} start={props.start} indent={props.depth * 14 + 20} />
    </li>
  );
}

function bounds(spans: Span[]): [bigint, bigint] {
  let lo = BigInt(spans[0].start_unix_nano);
  let hi = BigInt(spans[0].end_unix_nano);
  for (const s of spans) {
    const a = BigInt(s.start_unix_nano);
    const b = BigInt(s.end_unix_nano);
    if (a < lo) lo = a;
    if (b > hi) hi = b;
  }
  return [lo, hi > lo ? hi : lo + 1n];
}

export function Timeline(props: {
  spans: Span[];
  hops?: Hop[];
  logs?: LogRecord[];
  grouped?: boolean;
  selected?: string | null;
  onSelect: (span: Span) => void;
}) {
  const { spans, hops = [] } = props;
  if (!spans.length) return <p class="muted">No spans.</p>;
  const [t0, t1] = bounds(spans);
  const total = Number(t1 - t0);
  const at = (ns: bigint) => (100 * Number(ns - t0)) / total;
  const rows = treeOrder(spans);
  const groups: Group[] = props.grouped
    ? invocationGroups(rows)
    : [{ title: "", subtitle: "", rows, start: t0 }];
  const bySpanId = new Map(spans.map((s) => [s.span_id, s]));
  const hopInto = new Map<string, Hop[]>();
  for (const hop of hops) {
    const list = hopInto.get(hop.to_span) ?? [];
    list.push(hop);
    hopInto.set(hop.to_span, list);
  }
  const logsOf = new Map<string, LogRecord[]>();
  const loose: LogRecord[] = []; // no span id, or a span this view does not hold
  const keys = new Set(spans.map(spanKey));
  for (const log of props.logs ?? []) {
    const key = `${log.trace_id}:${log.span_id}`;
    if (log.span_id && keys.has(key)) logsOf.set(key, [...(logsOf.get(key) ?? []), log]);
    else loose.push(log);
  }
  const ticks = [0, 0.25, 0.5, 0.75, 1];
  return (
    <div class="timeline" data-testid="timeline">
      <div class="axis" aria-hidden="true">
        <span class="axis-label" />
        <span class="axis-scale">
          {ticks.map((t) => (
            <span class="tick" style={{ left: `${t * 100}%` }} key={t}>
              {ms((t * total) / 1e6)}
            </span>
          ))}
        </span>
      </div>
      {groups.map((group, gi) => (
        <section class="tl-group" key={gi} aria-label={group.title ? `${group.title} ${group.subtitle}` : "spans"}>
          {group.title ? (
            <h3 class="tl-group-title">
              {group.title} <span class="muted">{group.subtitle}</span>
            </h3>
          ) : null}
          <ol class="tl-rows">
            {group.rows.map(({ span, depth }) => {
              const start = BigInt(span.start_unix_nano);
              const end = BigInt(span.end_unix_nano);
              const left = at(start);
              const width = Math.max(0.4, at(end) - left);
              const error = span.status.code === "ERROR";
              const killed = killedClass(span.attributes);
              const selected = props.selected === span.span_id;
              const incoming = hopInto.get(span.span_id) ?? [];
              return (
                <Fragment key={span.span_id}>
                  {incoming.map((hop, hi) => {
                    const producer = bySpanId.get(hop.from_span);
                    if (!producer) return null;
                    const from = BigInt(producer.end_unix_nano);
                    const dl = at(from < start ? from : start);
                    const dw = Math.max(0.4, Math.abs(at(start) - at(from)));
                    // No dwell from the graph and a consumer started inside its producer: a call
                    // made while the caller waited (a parent hop), not a wait.
                    const wait = hop.dwell_ms ?? (start >= from ? Number(start - from) / 1e6 : null);
                    return (
                      <li class="tl-dwell" key={`hop-${hi}`} data-testid="dwell">
                        <span class="tl-label" style={{ paddingLeft: `${depth * 14 + 6}px` }}>
                          ⇢ via {hop.via}
                          {wait === null ? " · called while its caller waited" : ` · waited ${ms(wait)}`}
                          {hop.attempt && hop.attempt > 1 ? ` · attempt ${hop.attempt}` : ""}
                          {hop.clock_skew ? " (the clocks disagree: the wait was clamped)" : ""}
                        </span>
                        <span class="tl-track">
                          {wait === null ? null : <span class="dwell-bar" style={{ left: `${dl}%`, width: `${dw}%` }} />}
                        </span>
                      </li>
                    );
                  })}
                  <li>
                    <button
                      type="button"
                      class={`tl-row${selected ? " selected" : ""}${error ? " error" : ""}${killed ? ` killed killed-${killed}` : ""}`}
                      data-testid="timeline-row"
                      data-span-id={span.span_id}
                      aria-pressed={selected}
                      onClick={() => props.onSelect(span)}
                    >
                      <span class="tl-label" style={{ paddingLeft: `${depth * 14 + 6}px` }}>
                        <span class="tl-service">{span.service}</span> <span class="tl-name">{span.name}</span>
                        {killed ? (
                          <span class={`badge bad killed-badge killed-${killed}`} data-testid="killed-badge" data-class={killed}>
                            killed · {KILLED_LABELS[killed]}
                          </span>
                        ) : null}
                      </span>
                      <span class="tl-track">
                        <span
                          class={`tl-bar kind-${span.kind.toLowerCase()}`}
                          style={{ left: `${left}%`, width: `${width}%` }}
                        />
                        <span
                          class="tl-duration"
                          style={left + width > 85 ? { right: `${100 - left}%` } : { left: `${left + width}%` }}
                        >
                          {ms(span.duration_ms)}
                        </span>
                      </span>
                    </button>
                  </li>
                  {logsOf.has(spanKey(span)) ? (
                    <SpanLogs logs={logsOf.get(spanKey(span)) ?? []} start={start} depth={depth} />
                  ) : null}
                </Fragment>
              );
            })}
          </ol>
        </section>
      ))}
      {loose.length ? (
        <section class="tl-group" aria-label="logs not tied to a span">
          <h3 class="tl-group-title">
            Logs <span class="muted">not tied to a span shown here</span>
          </h3>
          <ol class="tl-rows">
            <SpanLogs logs={loose} start={t0} depth={0} />
          </ol>
        </section>
      ) : null}
    </div>
  );
}
