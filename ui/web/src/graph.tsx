// The service map drawing: cytoscape with a layered left-to-right dagre layout. Shapes say what a
// node is, pie slices its health (ok / 4xx / 5xx / throttled), edge labels the traffic. Labels
// are drawn on a canvas, so no name from the data can ever become markup.
import cytoscape from "cytoscape";
import dagre from "cytoscape-dagre";
import { useEffect, useRef } from "preact/hooks";
import { ms, pct } from "./format";
import { killedSummary } from "./killed";
import type { MapEdge, MapNode, ServiceMap } from "./types";

cytoscape.use(dagre);

export const SHAPES: Record<string, string> = {
  function: "round-rectangle",
  service: "ellipse",
  queue: "tag",
  topic: "diamond",
  table: "barrel",
  stream: "right-rhomboid",
  api: "hexagon",
  http: "octagon",
  schedule: "round-triangle",
  bus: "round-diamond",
  database: "barrel",
  aws: "round-octagon",
  client: "round-tag",
};

export const HEALTH_COLOURS = { ok: "#2e9d5b", c4xx: "#e0a526", c5xx: "#d64545", throttled: "#8a5cd6", idle: "#9aa5b1" };
// Pale versions fill the nodes, so their names stay readable on top.
const HEALTH_FILLS = { ok: "#cdeed9", c4xx: "#fbe5ad", c5xx: "#f7c1c1", throttled: "#e0d2f7", idle: "#e4e7eb" };

/** A node's fill: bands left to right as wide as each health share (a hard-stop gradient). */
function healthFill(h: Health): Record<string, string> {
  if (!h.count) return { "background-color": HEALTH_FILLS.idle };
  const bands = (["ok", "c4xx", "c5xx", "throttled"] as const).filter((k) => h[k] > 0);
  if (bands.length === 1) return { "background-color": HEALTH_FILLS[bands[0]] };
  const colours: string[] = [];
  const stops: string[] = [];
  let at = 0;
  for (const band of bands) {
    colours.push(HEALTH_FILLS[band], HEALTH_FILLS[band]);
    stops.push(`${(at * 100).toFixed(1)}%`);
    at += h[band];
    stops.push(`${(Math.min(at, 1) * 100).toFixed(1)}%`);
  }
  return {
    "background-fill": "linear-gradient",
    "background-gradient-direction": "to-right",
    "background-gradient-stop-colors": colours.join(" "),
    "background-gradient-stop-positions": stops.join(" "),
  };
}

export type Selection = { type: "node"; id: string } | { type: "edge"; id: string } | null;

function num(value: unknown): number | null {
  return typeof value === "number" && Number.isFinite(value) ? value : null;
}

/** A node's or edge's numbers: from ``metrics`` when the API nests them, else from the object itself. */
export function metricsOf(item: MapNode | MapEdge): Record<string, unknown> {
  const nested = (item as MapNode).metrics;
  return nested && typeof nested === "object" ? { ...item, ...nested } : { ...item };
}

export interface Health {
  count: number;
  ok: number;
  c4xx: number;
  c5xx: number;
  throttled: number;
}

/** Health shares: the API's own split when it gives one, else errors and throttles out of count. */
export function healthOf(item: MapNode | MapEdge): Health {
  const m = metricsOf(item);
  const count = num(m.count) ?? 0;
  const split = (m.health ?? m.health_shares) as Record<string, unknown> | undefined;
  if (split && typeof split === "object") {
    const pick = (...keys: string[]) => keys.map((k) => num(split[k])).find((v) => v !== null) ?? 0;
    const ok = pick("ok");
    const c4xx = pick("4xx", "client_error", "client_errors", "fault_4xx");
    const c5xx = pick("5xx", "server_error", "server_errors", "error", "errors");
    const throttled = pick("throttled", "throttle", "throttles");
    const sum = ok + c4xx + c5xx + throttled;
    if (sum > 0) {
      // Shares or counts: normalise either way.
      return { count, ok: ok / sum, c4xx: c4xx / sum, c5xx: c5xx / sum, throttled: throttled / sum };
    }
  }
  if (!count) return { count, ok: 0, c4xx: 0, c5xx: 0, throttled: 0 };
  const throttled = Math.min(count, num(m.throttles) ?? 0);
  const errors = Math.max(0, Math.min(count - throttled, (num(m.errors) ?? 0) - throttled));
  return { count, ok: (count - errors - throttled) / count, c4xx: 0, c5xx: errors / count, throttled: throttled / count };
}

export function edgeId(edge: MapEdge): string {
  return edge.id ?? `${edge.source}→${edge.target}:${edge.kind}`;
}

export function edgeLabel(edge: MapEdge, minutes: number): string {
  const m = metricsOf(edge);
  const count = num(m.count) ?? 0;
  // minutes 0: one transaction's own map, where counts are not rates.
  const rate = count / Math.max(minutes, 1);
  const parts = [minutes > 0 ? `${rate.toFixed(rate < 10 ? 1 : 0)}/min` : `${count}×`];
  const p95 = num(m.p95_ms);
  if (p95 !== null) parts.push(`p95 ${ms(p95)}`);
  const errors = num(m.errors) ?? 0;
  if (count) parts.push(`${pct(errors, count)} err`);
  const dwell = num(m.dwell_p95_ms);
  if (dwell !== null) parts.push(`wait p95 ${ms(dwell)}`);
  return parts.join(" · ");
}

/** The same on two short lines, for the drawing. */
function edgeCaption(edge: MapEdge, minutes: number): string {
  const parts = edgeLabel(edge, minutes).split(" · ");
  return parts.length > 2 ? `${parts.slice(0, 2).join(" · ")}\n${parts.slice(2).join(" · ")}` : parts.join(" · ");
}

const READABLE_ZOOM = 0.6;

/** Fit the map, but never so small that its labels cannot be read: then start at the entry side. */
function readableFit(cy: cytoscape.Core): void {
  cy.fit(undefined, 20);
  if (cy.zoom() >= READABLE_ZOOM) return;
  const box = cy.elements().boundingBox();
  cy.zoom(READABLE_ZOOM);
  cy.pan({ x: 20 - box.x1 * READABLE_ZOOM, y: cy.height() / 2 - ((box.y1 + box.y2) / 2) * READABLE_ZOOM });
}

export function ServiceMapGraph(props: {
  map: ServiceMap;
  minutes: number;
  selection: Selection;
  onSelect: (selection: Selection) => void;
  height?: number;
  testid?: string;
}) {
  const container = useRef<HTMLDivElement>(null);
  const cyRef = useRef<cytoscape.Core | null>(null);
  const onSelect = useRef(props.onSelect);
  onSelect.current = props.onSelect;

  useEffect(() => {
    if (!container.current) return undefined;
    const ids = new Set(props.map.nodes.map((n) => n.id));
    const elements: cytoscape.ElementDefinition[] = [];
    for (const node of props.map.nodes) {
      const h = healthOf(node);
      const killed = killedSummary(node.killed);
      elements.push({
        group: "nodes",
        data: { id: node.id, label: `${node.name}\n${node.kind}${killed ? `\n⚠ ${killed}` : ""}`, kind: node.kind },
        style: { shape: SHAPES[node.kind] ?? "pentagon", ...healthFill(h) },
        classes: [node.status ?? "", h.c5xx + h.c4xx >= 0.05 ? "unhealthy" : "", killed ? "killed" : ""].join(" ").trim(),
      });
    }
    for (const edge of props.map.edges) {
      if (!ids.has(edge.source) || !ids.has(edge.target)) continue;
      const h = healthOf(edge);
      const colour =
        h.c5xx >= 0.05 ? HEALTH_COLOURS.c5xx : h.c4xx >= 0.05 ? HEALTH_COLOURS.c4xx : h.throttled > 0 ? HEALTH_COLOURS.throttled : "#7b8794";
      elements.push({
        group: "edges",
        data: { id: edgeId(edge), source: edge.source, target: edge.target, label: edgeCaption(edge, props.minutes) },
        style: {
          "line-color": colour,
          "target-arrow-color": colour,
          width: 1.5 + Math.min(4, Math.log10(1 + (num(metricsOf(edge).count) ?? 0))),
        },
        classes: [edge.kind, edge.status ?? ""].join(" ").trim(),
      });
    }
    const cy = cytoscape({
      container: container.current,
      elements,
      wheelSensitivity: 0.3,
      minZoom: 0.2,
      maxZoom: 3,
      style: [
        {
          selector: "node",
          style: {
            "background-color": HEALTH_FILLS.idle,
            "border-color": "#52606d",
            "border-width": 1.5,
            width: 140,
            height: 50,
            label: "data(label)",
            "text-wrap": "wrap",
            "text-max-width": "130px",
            "text-valign": "center",
            "font-size": 13,
            color: "#1f2933",
          } as unknown as cytoscape.Css.Node,
        },
        { selector: "node.unhealthy", style: { "border-color": HEALTH_COLOURS.c5xx, "border-width": 3 } },
        { selector: "node.killed", style: { "border-color": "#8a1c1c", "border-width": 4, "border-style": "dashed", height: 64 } },
        { selector: "node.new", style: { "border-color": "#2563eb", "border-width": 3, "border-style": "double" } },
        { selector: "node.gone", style: { opacity: 0.45, "border-style": "dashed" } },
        {
          selector: "edge",
          style: {
            "curve-style": "bezier",
            "target-arrow-shape": "triangle",
            label: "data(label)",
            "font-size": 10,
            "text-wrap": "wrap",
            color: "#3e4c59",
            "text-background-color": "#ffffff",
            "text-background-opacity": 0.85,
            "text-background-padding": "2px",
            "text-rotation": "autorotate",
          } as cytoscape.Css.Edge,
        },
        { selector: "edge.publish", style: { "line-style": "dashed" } },
        { selector: "edge.deliver", style: { "line-style": "dotted" } },
        { selector: "edge.new", style: { "line-color": "#2563eb", "target-arrow-color": "#2563eb" } },
        { selector: "edge.gone", style: { opacity: 0.4 } },
        { selector: ".faded", style: { opacity: 0.15 } },
        { selector: ":selected, .chosen", style: { "border-color": "#2563eb", "border-width": 4, "line-color": "#2563eb" } },
      ],
      layout: { name: "dagre", rankDir: "LR", nodeSep: 30, rankSep: 170, edgeSep: 12, padding: 20 } as cytoscape.LayoutOptions,
    });
    cy.on("mouseover", "node", (event) => {
      const node = event.target as cytoscape.NodeSingular;
      const keep = node.predecessors().union(node.successors()).union(node);
      cy.elements().not(keep).addClass("faded");
    });
    cy.on("mouseout", "node", () => cy.elements().removeClass("faded"));
    cy.on("tap", "node", (event) => onSelect.current({ type: "node", id: (event.target as cytoscape.NodeSingular).id() }));
    cy.on("tap", "edge", (event) => onSelect.current({ type: "edge", id: (event.target as cytoscape.EdgeSingular).id() }));
    cy.on("tap", (event) => {
      if (event.target === cy) onSelect.current(null);
    });
    cyRef.current = cy;
    // For the browser tests (and curious users in the console): the drawing's own model.
    (container.current as HTMLElement & { cy?: cytoscape.Core }).cy = cy;
    // The panel narrows the map: follow the container's size, and keep the whole map in view.
    const observer = new ResizeObserver(() => {
      cy.resize();
      readableFit(cy);
    });
    observer.observe(container.current);
    return () => {
      observer.disconnect();
      cy.destroy();
      cyRef.current = null;
    };
  }, [props.map, props.minutes]);

  useEffect(() => {
    const cy = cyRef.current;
    if (!cy) return;
    cy.elements().removeClass("chosen");
    if (props.selection) cy.getElementById(props.selection.id).addClass("chosen");
  }, [props.selection, props.map]);

  const zoom = (factor: number) => {
    const cy = cyRef.current;
    if (cy) cy.zoom({ level: cy.zoom() * factor, renderedPosition: { x: cy.width() / 2, y: cy.height() / 2 } });
  };
  return (
    <div class="graph" data-testid={props.testid}>
      <div class="graph-tools" role="group" aria-label="Zoom">
        <button type="button" onClick={() => zoom(1.25)} aria-label="Zoom in">
          +
        </button>
        <button type="button" onClick={() => zoom(0.8)} aria-label="Zoom out">
          −
        </button>
        <button type="button" onClick={() => cyRef.current?.fit(undefined, 20)} title="Show the whole map">
          Fit
        </button>
      </div>
      <div ref={container} class="graph-canvas" style={{ height: `${props.height ?? 520}px` }} />
    </div>
  );
}
