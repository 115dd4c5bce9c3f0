package control

import (
	"context"
	"fmt"
	"strings"

	"github.com/sluicehq/sluice/dispatch"
)

// channelPrefix starts the key of each channel's setting:
// channel.<channel>.
const channelPrefix = "channel."

// ChannelStatus is the value of a channel.<channel> key. The zero value, the
// channel enabled, is the default.
type ChannelStatus struct {
	// Disabled holds the channel's messages in the stream, unsent and not
	// failed, until it is enabled again.
	Disabled bool `json:"disabled"`
}

var channelKind = kind[ChannelStatus]{}

// ChannelKey returns the key of ch's setting.
func ChannelKey(ch dispatch.Channel) string { return channelPrefix + string(ch) }

func channelKey(ch dispatch.Channel) (string, error) {
	if !ch.Valid() {
		return "", fmt.Errorf("%w: unknown channel %q", ErrInvalid, ch)
	}
	return ChannelKey(ch), nil
}

// Channel returns ch's setting (enabled, Revision 0, if never set).
func (s *Store) Channel(ctx context.Context, ch dispatch.Channel) (Setting[ChannelStatus], error) {
	key, err := channelKey(ch)
	if err != nil {
		return Setting[ChannelStatus]{}, err
	}
	return get(ctx, s, channelKind, key)
}

// SetChannel disables or enables a channel for the whole fleet, audited as
// SetErrorLogMode is, and returns the setting it replaced.
func (s *Store) SetChannel(ctx context.Context, ch dispatch.Channel, v ChannelStatus, actor string) (old ChannelStatus, err error) {
	o, _, err := s.setChannel(ctx, ch, v, actor)
	return o.Value, err
}

func (s *Store) setChannel(ctx context.Context, ch dispatch.Channel, v ChannelStatus, actor string) (old, cur Setting[ChannelStatus], err error) {
	key, err := channelKey(ch)
	if err != nil {
		return old, cur, err
	}
	return update(ctx, s, channelKind, key, actor, func(Setting[ChannelStatus]) (ChannelStatus, error) {
		return v, nil
	})
}

// ChannelUpdate is one channel's setting, as WatchChannels delivers it.
type ChannelUpdate struct {
	Channel dispatch.Channel
	Setting[ChannelStatus]
}

// WatchChannels calls fn, from one goroutine until ctx ends (it then returns
// nil), for each channel that has a setting, then for every change. synced,
// if not nil, is called once after the current settings were delivered:
// channels not delivered by then are enabled. A deleted key is delivered as
// enabled.
func (s *Store) WatchChannels(ctx context.Context, fn func(ChannelUpdate), synced func()) error {
	return watch(ctx, s, channelKind, channelPrefix+">", func(key string, st Setting[ChannelStatus], _ bool) {
		ch := dispatch.Channel(strings.TrimPrefix(key, channelPrefix))
		if !ch.Valid() {
			s.log.Warn("control: skipping the setting of an unknown channel", "key", key)
			return
		}
		fn(ChannelUpdate{Channel: ch, Setting: st})
	}, synced)
}
