// k6 scenario for bench/real_runs: a fixed arrival rate over four endpoints.
//
//   k6 run -e BASE=http://127.0.0.1:18090 -e RATE=50 -e DURATION=20s \
//     --out json=k6_out.json.gz --summary-export=k6_summary_export.json k6_script.js
//
// constant-arrival-rate: RATE iterations/s, each one request; endpoint mix /health 20 %,
// /items 35 %, /search 25 %, POST /checkout 20 %. Requests carry a `name` tag equal to their
// path, so every run reports the same endpoint names. The per-endpoint thresholds are there
// so that the summaries have `http_req_duration{name:...}` submetrics (k6 only creates
// submetrics that a threshold names); they are loose and are not the regression test.
// handleSummary writes k6_handle_summary.json (SUMMARY_JSON) and a one-line summary (the
// usual text summary needs jslib.k6.io, which this machine cannot reach).
import http from 'k6/http';
import { check } from 'k6';

const BASE = __ENV.BASE || 'http://127.0.0.1:18090';
const RATE = parseInt(__ENV.RATE || '50', 10);
const DURATION = __ENV.DURATION || '20s';
const NAMES = ['/health', '/items', '/search', '/checkout'];

const thresholds = { http_req_failed: ['rate<0.5'] };
for (const name of NAMES) {
  thresholds[`http_req_duration{name:${name}}`] = ['p(95)<2000'];
  thresholds[`http_req_failed{name:${name}}`] = ['rate<0.5'];
}

export const options = {
  scenarios: {
    shoppers: {
      executor: 'constant-arrival-rate',
      rate: RATE,
      timeUnit: '1s',
      duration: DURATION,
      preAllocatedVUs: 20,
      maxVUs: 60,
    },
  },
  thresholds,
  summaryTrendStats: ['avg', 'min', 'med', 'max', 'p(90)', 'p(95)', 'p(99)', 'count'],
};

export default function () {
  const pick = Math.random() * 100;
  let res;
  if (pick < 20) {
    res = http.get(`${BASE}/health`, { tags: { name: '/health' } });
  } else if (pick < 55) {
    res = http.get(`${BASE}/items`, { tags: { name: '/items' } });
  } else if (pick < 80) {
    res = http.get(`${BASE}/search?q=widget`, { tags: { name: '/search' } });
  } else {
    res = http.post(`${BASE}/checkout`, JSON.stringify({ item: 3, qty: 1 }), {
      headers: { 'Content-Type': 'application/json' },
      tags: { name: '/checkout' },
    });
  }
  check(res, { 'status 200': (r) => r.status === 200 });
}

export function handleSummary(data) {
  const m = data.metrics;
  const line = `requests ${m.http_reqs.values.count}, failed ${m.http_req_failed.values.passes}, ` +
    `p95 ${m.http_req_duration.values['p(95)'].toFixed(1)} ms\n`;
  const out = { stdout: line };
  out[__ENV.SUMMARY_JSON || 'k6_handle_summary.json'] = JSON.stringify(data, null, 1);
  return out;
}
