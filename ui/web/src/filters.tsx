// Search filters that live in the URL: the form edits a copy, "Search" writes it to the address.
// Callers key the form by the query string, so Back or a shared link shows that link's filters.
import { useState } from "preact/hooks";
import { type Location, navigate } from "./router";

export interface Field {
  name: string;
  label: string;
  type?: "text" | "number" | "select";
  options?: { value: string; label: string }[];
  placeholder?: string;
  list?: string;
}

/** label.KEY=VALUE query parameters as "key=value, key=value" text, and back. */
export function labelsText(params: URLSearchParams): string {
  const out: string[] = [];
  params.forEach((value, key) => {
    if (key.startsWith("label.")) out.push(`${key.slice(6)}=${value}`);
  });
  return out.join(", ");
}

export function labelParams(text: string): [string, string][] {
  return text
    .split(",")
    .map((part) => part.trim())
    .filter((part) => part.includes("="))
    .map((part) => {
      const at = part.indexOf("=");
      return [`label.${part.slice(0, at).trim()}`, part.slice(at + 1).trim()] as [string, string];
    })
    .filter(([key, value]) => key.length > 6 && value.length > 0);
}

export function FilterForm(props: { location: Location; fields: Field[]; label: string; testid?: string; labels?: boolean }) {
  const { location, fields } = props;
  const initial: Record<string, string> = {};
  for (const field of fields) initial[field.name] = location.params.get(field.name) ?? "";
  initial.labels = labelsText(location.params);
  const [values, setValues] = useState(initial);
  const set = (name: string, value: string) => setValues((v) => ({ ...v, [name]: value }));
  const submit = (event: Event) => {
    event.preventDefault();
    const params = new URLSearchParams();
    for (const key of ["range", "from", "to", "refresh"]) {
      const value = location.params.get(key);
      if (value) params.set(key, value);
    }
    for (const field of fields) {
      const value = (values[field.name] ?? "").trim();
      if (value) params.set(field.name, value);
    }
    for (const [key, value] of labelParams(values.labels ?? "")) params.append(key, value);
    const text = params.toString();
    navigate(text ? `${location.path}?${text}` : location.path);
  };
  return (
    <form class="filters" role="search" aria-label={props.label} onSubmit={submit} data-testid={props.testid}>
      {fields.map((field) => (
        <label key={field.name}>
          <span>{field.label}</span>
          {field.type === "select" ? (
            <select
              name={field.name}
              value={values[field.name]}
              onChange={(e) => set(field.name, (e.currentTarget as HTMLSelectElement).value)}
            >
              {(field.options ?? []).map((o) => (
                <option value={o.value} key={o.value}>
                  {o.label}
                </option>
              ))}
            </select>
          ) : (
            <input
              name={field.name}
              type={field.type === "number" ? "number" : "text"}
              min={field.type === "number" ? 0 : undefined}
              step="any"
              placeholder={field.placeholder}
              list={field.list}
              value={values[field.name]}
              onInput={(e) => set(field.name, (e.currentTarget as HTMLInputElement).value)}
            />
          )}
        </label>
      ))}
      {props.labels === false ? null : (
      <label class="wide">
        <span>Labels</span>
        <input
          name="labels"
          type="text"
          placeholder="order_id=o-42, tenant=acme"
          value={values.labels}
          onInput={(e) => set("labels", (e.currentTarget as HTMLInputElement).value)}
        />
      </label>
      )}
      <div class="filter-actions">
        <button type="submit" class="primary">
          Search
        </button>
        <button
          type="button"
          onClick={() => {
            const params = new URLSearchParams();
            for (const key of ["range", "from", "to", "refresh"]) {
              const value = location.params.get(key);
              if (value) params.set(key, value);
            }
            const text = params.toString();
            navigate(text ? `${location.path}?${text}` : location.path);
          }}
        >
          Clear
        </button>
      </div>
    </form>
  );
}

/** Query parameters for the API from the URL: filters, labels and the cursor, plus the time window. */
export function apiFilters(location: Location, names: string[], window: { from: number; to: number }) {
  const out: Record<string, string | string[]> = {};
  for (const name of names) {
    const value = location.params.get(name);
    if (value) out[name] = value;
  }
  location.params.forEach((value, key) => {
    if (key.startsWith("label.")) out[key] = value;
  });
  out.from = String(Math.floor(window.from));
  out.to = String(Math.ceil(window.to));
  return out;
}

export type SortDir = "asc" | "desc";

export function SortHeader(props: {
  label: string;
  column: string;
  sort: [string, SortDir];
  onSort: (s: [string, SortDir]) => void;
}) {
  const [col, dir] = props.sort;
  const active = col === props.column;
  return (
    <th scope="col" aria-sort={active ? (dir === "asc" ? "ascending" : "descending") : "none"}>
      <button
        type="button"
        class="sort"
        onClick={() => props.onSort([props.column, active && dir === "desc" ? "asc" : "desc"])}
      >
        {props.label}
        {active ? (dir === "asc" ? " ▲" : " ▼") : ""}
      </button>
    </th>
  );
}

export function sortRows<T>(rows: T[], sort: [string, SortDir], value: (row: T, column: string) => number | string) {
  const [col, dir] = sort;
  const sign = dir === "asc" ? 1 : -1;
  return [...rows].sort((a, b) => {
    const x = value(a, col);
    const y = value(b, col);
    return (x < y ? -1 : x > y ? 1 : 0) * sign;
  });
}
