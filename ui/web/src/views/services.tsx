// The services seen in the window, with their error rates: what works before the map does.
import { ErrorBox, HowToSendData, Link, Loading } from "../common";
import { pct, when } from "../format";
import { useApi } from "../hooks";
import { carryRange, type Location } from "../router";
import type { Window } from "../timerange";
import type { ServicesResponse } from "../types";

export function ServicesView(props: { location: Location; window: Window; tick: number }) {
  const { location, window } = props;
  const result = useApi<ServicesResponse>(
    "/services",
    { from: Math.floor(window.from), to: Math.ceil(window.to) },
    props.tick,
  );
  const rows = result.data?.services ?? [];
  return (
    <div class="view">
      <h1>Services</h1>
      {result.error ? <ErrorBox error={result.error} what="services" /> : null}
      {result.loading && !result.data ? <Loading what="services" /> : null}
      {result.data && !rows.length ? <HowToSendData title={`No spans in ${window.label.toLowerCase()}`} /> : null}
      {rows.length ? (
        <table class="results" data-testid="service-results">
          <thead>
            <tr>
              <th scope="col">Service</th>
              <th scope="col">Spans</th>
              <th scope="col">Errors</th>
              <th scope="col">Error rate</th>
              <th scope="col">Last seen</th>
            </tr>
          </thead>
          <tbody>
            {rows.map((s) => (
              <tr key={s.name} class={s.errors ? "error" : ""}>
                <td>
                  <Link href={carryRange(location, "/spans", { service: s.name })}>{s.name}</Link>
                </td>
                <td class="num">{s.spans}</td>
                <td class="num">{s.errors}</td>
                <td class="num">{pct(s.errors, s.spans)}</td>
                <td class="nowrap">{when(s.last_seen)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : null}
    </div>
  );
}
