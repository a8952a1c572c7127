// Which Prometheus server a `prometheus` check may query: the server's --prometheus-url, or a
// check's own url when its host is in --prometheus-allow (empty: none). A deploy can make the
// scheduler send requests, so its targets are the operator's choice, as webhooks' are.
import { webhookAllowList } from '../../webhooks/allow.ts';

export interface PrometheusSettings {
  /** --prometheus-url */
  url?: string;
  /** --prometheus-allow: hosts and CIDR ranges a check's own url may name */
  allow: readonly string[];
}

const trimmed = (url: string) => url.replace(/\/+$/, '');

export function prometheusTarget(settings: PrometheusSettings, checkUrl: string | undefined): { url: string } | { refused: string } {
  if (checkUrl === undefined) {
    return settings.url !== undefined
      ? { url: trimmed(settings.url) }
      : { refused: 'no Prometheus server: give the server --prometheus-url, or the check a url allowed by --prometheus-allow' };
  }
  if (settings.url !== undefined && trimmed(checkUrl) === trimmed(settings.url)) return { url: trimmed(checkUrl) };
  const allowed = settings.allow.length > 0 && webhookAllowList(settings.allow)(new URL(checkUrl));
  return allowed
    ? { url: trimmed(checkUrl) }
    : { refused: `${new URL(checkUrl).host} is not a Prometheus server this server may query (--prometheus-url, --prometheus-allow)` };
}
