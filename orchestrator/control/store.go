package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/errorlog"
	"github.com/sluicehq/sluice/internal/jsensure"
)

// anonymous is the actor of a change that names none.
const anonymous = "anonymous"

// Bucket is the NATS KV bucket of the control plane.
const Bucket = "sluice_control"

// History is how many revisions of each key the bucket keeps: the recent part
// of the audit trail, readable without the database.
const History = 16

// maxAttempts bounds the compare-and-set attempts of one change while other
// writers keep changing the same key; between attempts a writer backs off a
// random few milliseconds, growing with the attempt, so that writers racing
// on one key (a fleet quarantining the same conversation) spread out.
const maxAttempts = 25

// auditTimeout bounds the audit insert, which runs even if the caller's
// context ended after the change was applied.
const auditTimeout = 5 * time.Second

// Options configure Open. The zero value is valid.
type Options struct {
	// DefaultErrorLogMode is the error log's mode at the first start of a
	// deployment: Open writes it, with actor "default", when the bucket holds
	// no mode yet, and ErrorLogMode reports it if the key is ever deleted. A
	// process started later with another default keeps the stored mode (and
	// logs the difference). Default errorlog.DefaultMode (full).
	DefaultErrorLogMode errorlog.Mode
	// Replicas is the bucket's number of replicas in a NATS cluster; an
	// existing bucket is scaled to it. Default 1.
	Replicas int
	// Events, when set, hears each quarantine and each purge of a stopped
	// conversation's messages once it is recorded (webhook.Publisher). Its
	// methods must not block.
	Events Events
}

// Events hears what happens to conversations (delivery-status webhooks).
type Events interface {
	// Quarantined: the conversation was quarantined for reason.
	Quarantined(tenant, conversation, reason string)
	// Purged: n queued messages of the stopped conversation were purged
	// and counted.
	Purged(tenant, conversation string, n uint64)
}

func (o Options) withDefaults() Options {
	if o.DefaultErrorLogMode.Name == "" {
		o.DefaultErrorLogMode = errorlog.DefaultMode
	}
	o.DefaultErrorLogMode = normalizeMode(o.DefaultErrorLogMode)
	if o.Replicas == 0 {
		o.Replicas = 1
	}
	return o
}

func (o Options) validate() error {
	if err := o.DefaultErrorLogMode.Validate(); err != nil {
		return fmt.Errorf("control: Options.DefaultErrorLogMode: %w", err)
	}
	if o.Replicas < 1 || o.Replicas > 5 {
		return fmt.Errorf("control: Options.Replicas must be 1 to 5, not %d", o.Replicas)
	}
	return nil
}

// Setting is the value of one control key, with who set it and when.
type Setting[T any] struct {
	Value T `json:"value"`
	// By is the actor that made the change: an API key's name, "default",
	// "quarantine"...
	By string `json:"by"`
	// At is when the change was made.
	At time.Time `json:"at"`
	// Revision is the key's KV revision; 0 when the key is not set and Value
	// is its default. Not part of the stored document.
	Revision uint64 `json:"-"`
}

// Store reads, changes and watches the control plane's settings.
type Store struct {
	kv          jetstream.KeyValue
	pool        *pgxpool.Pool // nil: changes are not audited in Postgres
	log         *slog.Logger
	defaultMode errorlog.Mode
	now         func() time.Time
	events      Events // nil: nobody hears quarantines and purges

	// beforeWrite, when set by tests, runs between reading a key and
	// writing its new revision.
	beforeWrite func(key string)
}

// Attach opens the control bucket of a running deployment as it is: it
// neither creates nor reconfigures the bucket and writes no default, so a
// client acting on someone else's fleet (the load test) cannot change it.
// pool may be nil (changes then are not audited in control_audit).
func Attach(ctx context.Context, js jetstream.JetStream, pool *pgxpool.Pool, logger *slog.Logger) (*Store, error) {
	kv, err := js.KeyValue(ctx, Bucket)
	if err != nil {
		return nil, fmt.Errorf("control: attach to bucket %s: %w", Bucket, err)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Store{kv: kv, pool: pool, log: logger.With("component", "control"),
		defaultMode: Options{}.withDefaults().DefaultErrorLogMode, now: time.Now}, nil
}

// Open opens the control bucket, creating it if missing, and writes the
// default error-log mode if none is set yet. pool may be nil for a process
// that only reads and watches: its changes are then not audited in
// control_audit (the bucket's history still records them). logger may be nil.
func Open(ctx context.Context, js jetstream.JetStream, pool *pgxpool.Pool, logger *slog.Logger, opts Options) (*Store, error) {
	opts = opts.withDefaults()
	if err := opts.validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	kv, err := EnsureBucket(ctx, js, opts.Replicas, logger)
	if err != nil {
		return nil, err
	}
	s := &Store{
		kv:          kv,
		pool:        pool,
		log:         logger.With("component", "control"),
		defaultMode: opts.DefaultErrorLogMode,
		now:         time.Now,
		events:      opts.Events,
	}
	if err := s.initErrorLogMode(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// EnsureBucket creates the control bucket with the given replicas (0: 1),
// or brings an existing one to them (jsensure.KeyValue). A process calls it
// before anything else opens the bucket (CheckEnv), so that a new
// deployment's bucket is created replicated, not scaled after its first
// writes. logger may be nil.
func EnsureBucket(ctx context.Context, js jetstream.JetStream, replicas int, logger *slog.Logger) (jetstream.KeyValue, error) {
	kv, err := jsensure.KeyValue(ctx, js, jetstream.KeyValueConfig{
		Bucket:      Bucket,
		Description: "sluice control plane: error-log mode, intake, conversation and channel states",
		History:     History,
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
	}, logger)
	if err != nil {
		return nil, fmt.Errorf("control: open %w", err)
	}
	return kv, nil
}

// kind describes the values of a kind of key: the default while the key is not
// set, and the check every value written or read must pass (nil: none).
type kind[T any] struct {
	def   T
	check func(T) error
}

func (k kind[T]) valid(v T) error {
	if k.check == nil {
		return nil
	}
	if err := k.check(v); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return nil
}

// decode reads a stored Setting, checked by k.
func decode[T any](k kind[T], e jetstream.KeyValueEntry) (Setting[T], error) {
	var st Setting[T]
	if err := json.Unmarshal(e.Value(), &st); err != nil {
		return Setting[T]{}, fmt.Errorf("control: %s revision %d: %w", e.Key(), e.Revision(), err)
	}
	if err := k.valid(st.Value); err != nil {
		return Setting[T]{}, fmt.Errorf("control: %s revision %d: %w", e.Key(), e.Revision(), err)
	}
	st.Revision = e.Revision()
	return st, nil
}

// get returns the setting of key, or k's default if it is not set.
func get[T any](ctx context.Context, s *Store, k kind[T], key string) (Setting[T], error) {
	e, err := s.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Setting[T]{Value: k.def}, nil
	}
	if err != nil {
		return Setting[T]{}, fmt.Errorf("control: get %s: %w", key, err)
	}
	return decode(k, e)
}

// getForUpdate is get for update: a value that cannot be decoded (written by
// hand, say) is logged and returned as unreadable, with old holding k's
// default at the value's revision, so that a change can repair it.
func getForUpdate[T any](ctx context.Context, s *Store, k kind[T], key string) (old Setting[T], unreadable []byte, err error) {
	e, err := s.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Setting[T]{Value: k.def}, nil, nil
	}
	if err != nil {
		return Setting[T]{}, nil, fmt.Errorf("control: get %s: %w", key, err)
	}
	old, err = decode(k, e)
	if err != nil {
		s.log.Warn("control: the stored value cannot be read; a change replaces it", "key", key, "revision", e.Revision(), "err", err)
		return Setting[T]{Value: k.def, Revision: e.Revision()}, e.Value(), nil
	}
	return old, nil, nil
}

// update changes key: it reads the current setting, asks change for the new
// value (change may refuse with an error, which update returns as is), checks
// it, and writes it with a compare-and-set on the revision read, starting
// again from the newer value when another writer got there first. Then it
// records the change in control_audit. It returns the setting replaced (its
// Revision 0 if the key was not set) and the one written.
//
// If the audit insert fails, the change stays applied: cur is valid and the
// error wraps ErrAudit.
func update[T any](ctx context.Context, s *Store, k kind[T], key, actor string, change func(old Setting[T]) (T, error)) (old, cur Setting[T], err error) {
	if actor == "" {
		actor = anonymous
	}
	var unreadable []byte // the old value, if it could not be decoded
	for attempt := 1; ; attempt++ {
		if old, unreadable, err = getForUpdate(ctx, s, k, key); err != nil {
			return Setting[T]{}, Setting[T]{}, err
		}
		v, err := change(old)
		if err != nil {
			return old, Setting[T]{}, err
		}
		if err := k.valid(v); err != nil {
			return old, Setting[T]{}, err
		}
		cur = Setting[T]{Value: v, By: actor, At: s.now().UTC().Truncate(time.Microsecond)}
		data, err := json.Marshal(cur)
		if err != nil {
			return old, Setting[T]{}, fmt.Errorf("control: encode %s: %w", key, err)
		}
		if s.beforeWrite != nil {
			s.beforeWrite(key)
		}
		if old.Revision == 0 {
			// Create also succeeds over a delete marker, where a
			// compare-and-set on revision 0 would not.
			cur.Revision, err = s.kv.Create(ctx, key, data)
		} else {
			cur.Revision, err = s.kv.Update(ctx, key, data, old.Revision)
		}
		if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			if attempt == maxAttempts {
				return old, Setting[T]{}, fmt.Errorf("%w: %s, after %d attempts", ErrConflict, key, attempt)
			}
			select {
			case <-time.After(time.Duration(1+rand.IntN(5*attempt)) * time.Millisecond):
			case <-ctx.Done():
				return old, Setting[T]{}, fmt.Errorf("control: write %s: %w", key, ctx.Err())
			}
			continue
		}
		if err != nil {
			return old, Setting[T]{}, fmt.Errorf("control: write %s: %w", key, err)
		}
		break
	}
	if err := audit(ctx, s, key, actor, old, unreadable, cur); err != nil {
		s.log.Error("control change applied but not audited", "key", key, "actor", actor,
			"revision", cur.Revision, "err", err)
		return old, cur, fmt.Errorf("%w: %s set to revision %d by %s: %w", ErrAudit, key, cur.Revision, actor, err)
	}
	s.log.Info("control change", "key", key, "actor", actor, "revision", cur.Revision)
	return old, cur, nil
}

// audit inserts one control_audit row for a change; old_value is NULL when
// the key was not set, and {"unreadable": "<stored text>"} when it held a
// value that could not be decoded. It outlives ctx (bounded by
// auditTimeout): a client that hangs up after the change is applied must not
// skip its audit row. Without a pool it does nothing.
func audit[T any](ctx context.Context, s *Store, key, actor string, old Setting[T], unreadable []byte, cur Setting[T]) error {
	if s.pool == nil {
		return nil
	}
	var oldJSON []byte // NULL
	var err error
	switch {
	case unreadable != nil:
		oldJSON, err = json.Marshal(map[string]string{"unreadable": printable(unreadable)})
	case old.Revision != 0:
		oldJSON, err = json.Marshal(old.Value)
	}
	if err != nil {
		return err
	}
	newJSON, err := json.Marshal(cur.Value)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), auditTimeout)
	defer cancel()
	_, err = s.pool.Exec(ctx, `INSERT INTO control_audit (at, actor, key, old_value, new_value)
		VALUES ($1, $2, $3, $4, $5)`, cur.At, actor, key, oldJSON, newJSON)
	return err
}

// maxUnreadable bounds how much of an unreadable value the audit keeps.
const maxUnreadable = 4 << 10

// printable makes b storable in a jsonb string: valid UTF-8 without NUL
// (which jsonb refuses), at most maxUnreadable bytes.
func printable(b []byte) string {
	if len(b) > maxUnreadable {
		b = b[:maxUnreadable]
	}
	return strings.ReplaceAll(strings.ToValidUTF8(string(b), "\uFFFD"), "\x00", "")
}
