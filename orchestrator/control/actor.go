package control

import "context"

// anonymous is the actor of a change whose context names none.
const anonymous = "anonymous"

type actorKey struct{}

// WithActor returns a context that names who makes the changes made with it.
// The API's authentication middleware sets it (to the API key's name, say)
// before the admin handlers run; the actor is recorded with every change.
func WithActor(ctx context.Context, actor string) context.Context {
	return context.WithValue(ctx, actorKey{}, actor)
}

// ActorFrom returns the actor set by WithActor, or "anonymous".
func ActorFrom(ctx context.Context) string {
	if a, ok := ctx.Value(actorKey{}).(string); ok && a != "" {
		return a
	}
	return anonymous
}
