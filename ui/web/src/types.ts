// The JSON of DESIGN §7 as the UI reads it. Fields beyond the stable minimum are optional.

export interface SpanStatus {
  code: "UNSET" | "OK" | "ERROR" | string;
  message?: string;
}

export interface SpanEvent {
  name: string;
  time: string;
  attributes: Record<string, unknown>;
}

export interface SpanLink {
  trace_id: string;
  span_id: string;
  attributes: Record<string, unknown>;
}

export interface Span {
  trace_id: string;
  span_id: string;
  parent_span_id: string | null;
  name: string;
  kind: string;
  service: string;
  start: string;
  start_unix_nano: string;
  end_unix_nano: string;
  duration_ms: number;
  status: SpanStatus;
  attributes: Record<string, unknown>;
  events: SpanEvent[];
  links: SpanLink[];
  resource: Record<string, unknown>;
}

export interface TraceResponse {
  trace_id: string;
  spans: Span[];
}

export interface SpanSearchResponse {
  spans: Span[];
  next_cursor: string | null;
}

export interface ServiceRow {
  name: string;
  spans: number;
  errors: number;
  error_rate: number;
  last_seen: string;
}

export interface ServicesResponse {
  services: ServiceRow[];
}

export interface MapNode {
  id: string;
  kind: string;
  name: string;
  metrics?: Record<string, unknown>;
  status?: string; // with compare: "new" | "gone"
  layer?: number;
  [more: string]: unknown;
}

export interface MapEdge {
  id?: string;
  source: string;
  target: string;
  kind: string; // sync | publish | deliver
  count?: number;
  errors?: number;
  throttles?: number;
  p50_ms?: number | null;
  p95_ms?: number | null;
  p99_ms?: number | null;
  dwell_p50_ms?: number | null;
  dwell_p95_ms?: number | null;
  status?: string;
  [more: string]: unknown;
}

export interface ServiceMap {
  nodes: MapNode[];
  edges: MapEdge[];
  [more: string]: unknown;
}

export interface TransactionEntry {
  trigger?: string;
  name?: string;
  [more: string]: unknown;
}

export interface TransactionRow {
  id: string;
  root_trace_id: string;
  entry: TransactionEntry | string | null;
  start: string;
  duration_ms: number;
  services: string[];
  hops: number;
  errors: number;
  trace_ids: string[];
  cold_starts?: number;
  incomplete?: boolean;
  [more: string]: unknown;
}

export interface TransactionSearchResponse {
  transactions: TransactionRow[];
  next_cursor: string | null;
}

export interface Hop {
  from_span: string;
  to_span: string;
  via: string;
  dwell_ms?: number | null;
  clock_skew?: boolean;
  attempt?: number;
  [more: string]: unknown;
}

/** A log record tied to its span (or only its trace: span_id null). */
export interface LogRecord {
  trace_id: string | null;
  span_id: string | null;
  time: string;
  time_unix_nano: string;
  severity_number: number;
  severity_text: string;
  service: string;
  body: string;
  attributes: Record<string, unknown>;
}

export interface TransactionDetail {
  id?: string;
  spans: Span[];
  hops: Hop[];
  map?: ServiceMap;
  logs?: LogRecord[];
  [more: string]: unknown;
}
