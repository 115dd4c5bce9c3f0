#!/usr/bin/env bash
# Offline checks of deploy/ (make deploy-check): the NATS configs, the alert
# and recording rules and their unit tests, and the Helm chart. The compose
# file's and the chart's sluice commands are checked against sluice's flags
# by cmd/sluice's TestDeploy* tests, and the dashboard and alerts against a
# real Prometheus by deploy/deploytest; make deploy-check runs those too.
set -euo pipefail
cd "$(dirname "$0")"

for conf in nats/*.conf; do
	nats-server -t -c "$conf"
done

promtool check rules prometheus/sluice-alerts.yml prometheus/sluice-recording.yml
promtool test rules prometheus/tests/*.yml
promtool check config --syntax-only compose/prometheus.yml

# helm warns on stderr that files/ links to deploy/prometheus; that is meant.
helm lint --strict helm/sluice 2> >(grep -v 'found symbolic link' >&2)
helm template sluice helm/sluice > /dev/null 2> >(grep -v 'found symbolic link' >&2)
helm template sluice helm/sluice --set serviceMonitor.enabled=false,prometheusRule.enabled=false,migrations.enabled=false > /dev/null \
	2> >(grep -v 'found symbolic link' >&2)
echo "deploy-check: NATS configs, rules, rule tests and Helm chart OK"
