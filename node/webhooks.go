package node

import (
	"context"

	"github.com/sluicehq/sluice/api"
	"github.com/sluicehq/sluice/webhook"
)

// startWebhookEvents starts, in either role, the producer of
// delivery-status events: outcomes (worker), quarantines and purges
// (either). Tenants without endpoints produce nothing.
func (n *Node) startWebhookEvents(ctx context.Context) error {
	if _, err := webhook.EnsureStream(ctx, n.JS, n.cfg.Webhooks.Replicas); err != nil {
		return err
	}
	var err error
	if n.webhookMetrics, err = webhook.NewMetrics(n.Registry); err != nil {
		return err
	}
	n.webhookStore = webhook.NewStore(n.Pool, n.NC, n.cfg.Webhooks.AllowInternal, n.log)
	p, err := webhook.NewPublisher(n.JS, n.webhookStore, n.cfg.WebhookQueue, n.log, n.Registry)
	if err != nil {
		return err
	}
	if err := p.Start(ctx); err != nil {
		return err
	}
	n.WebhookEvents = p
	return nil
}

// startWebhookDispatcher starts delivering events to the endpoints whose
// lease this worker takes.
func (n *Node) startWebhookDispatcher(ctx context.Context) error {
	d, err := webhook.NewDispatcher(n.JS, n.webhookStore, n.cfg.Webhooks, n.webhookMetrics, n.log)
	if err != nil {
		return err
	}
	if err := d.Start(ctx); err != nil {
		return err
	}
	n.Webhooks = d
	return nil
}

// mountWebhooks registers /v1/webhooks, audited in the control plane's
// audit; replays run in this process.
func (n *Node) mountWebhooks(camp *api.Campaigns) error {
	var err error
	n.replayer, err = webhook.NewReplayer(n.JS, n.webhookStore, n.cfg.Webhooks, n.webhookMetrics, n.log)
	if err != nil {
		return err
	}
	wh, err := api.NewWebhooks(camp, api.WebhooksConfig{
		Store: n.webhookStore, Replayer: n.replayer, Audit: n.Control.RecordChange,
		DeleteConsumer: func(ctx context.Context, id string) error { return webhook.DeleteConsumer(ctx, n.JS, id) },
	})
	if err != nil {
		return err
	}
	wh.Register(n.HTTP)
	return nil
}
