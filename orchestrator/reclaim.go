package orchestrator

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// The bulk stream's retention is Limits (see StreamName): an ack leaves the
// message in the stream, and each worker's reclaim pass removes what every
// conversation consumer has acked. Acks stay cheap for the server (no
// interest check across the conversations' consumers, no delete and
// tombstone per message, no Raft proposal per ack in a cluster) and the
// space comes back a block at a time.
//
// A purge has one side effect on the consumers it concerns (every one, for a
// stream-wide purge): the server empties their redelivery queues, and a
// message that was waiting there is delivered again only once its AckWait
// has passed. So the lane never leaves a held message there (it is parked,
// see pipeline.hold), and a retry or a deferral (NakWithDelay) that comes
// due just before a purge waits up to AckWait more.

// reclaimEvery is how often a worker's reclaim pass runs (in the discovery
// loop); with reclaimFloorBatch, a draining stream holds up to about
// 200,000 acked messages more than a work queue would.
const reclaimEvery = time.Second

// The stream-wide purge waits until it can remove reclaimFloorBatch
// messages or reclaimFloorEvery has passed since the last: the file store
// drops whole blocks at no cost per message, but in the block the floor
// falls in it removes message by message, with a tombstone each, and
// rewrites the block. Purging each second what a second of a paced lane
// acked (less than a block at 15,000 messages a second) made every purge
// such a one (BENCHMARKS.md, 2026-12-07, fourth session).
const (
	reclaimFloorBatch = 200_000
	reclaimFloorEvery = 30 * time.Second
)

// reclaimSubjectsEvery is how long the stream-wide floor must stay where it
// is before the pass purges, subject by subject, what each conversation
// acked above it (a held conversation's first queued message or a message
// waiting for a retry keeps it back), and how often it then does: those
// purges remove messages one at a time, so they run seldom, and never
// while the floor moves.
const reclaimSubjectsEvery = 10 * time.Second

// subjectBound is a conversation subject with a sequence below which every
// message of that subject has been acked.
type subjectBound struct {
	subject string
	below   uint64
}

// reclaim removes acked messages from the bulk stream, given its info with
// the per-subject counts (taken before the consumers' infos: a message
// published after it has a later sequence than any bound found here):
//
//   - stream-wide below the floor, the lowest of each conversation
//     consumer's ack floor + 1 and each consumer-less subject's first
//     message (a subject whose consumer this worker does not know yet
//     counts as unacked), once the floor is reclaimFloorBatch past the
//     stream's first message or reclaimFloorEvery after the last such purge;
//   - each conversation whose consumer has acked all it delivered and has
//     nothing pending: its subject below its last delivered message + 1,
//     which empties it, so that discovery deletes its consumer;
//   - when the floor has not moved for reclaimSubjectsEvery (a held
//     conversation's first queued message, a message waiting for a retry),
//     every reclaimSubjectsEvery, each subject below its ack floor + 1 where
//     that is above the stream-wide floor.
//
// A consumer's info that cannot be read stops the pass: nothing is removed
// on a guess.
func (s *bulkSource) reclaim(ctx context.Context, info *jetstream.StreamInfo, now time.Time) {
	if now.Sub(s.reclaimedAt) < reclaimEvery {
		return
	}
	s.reclaimedAt = now
	floor, drained, behind, ok := s.reclaimPlan(ctx, info)
	if !ok {
		return
	}
	if floor > info.State.FirstSeq && (floor-info.State.FirstSeq >= reclaimFloorBatch || now.Sub(s.floorReclaimedAt) >= reclaimFloorEvery) {
		s.floorReclaimedAt = now
		s.purgeReclaimed(ctx, "floor", "", floor)
	}
	for _, b := range drained {
		s.purgeReclaimed(ctx, "drained", b.subject, b.below)
	}
	if floor != s.floor {
		s.floor, s.floorMovedAt = floor, now
	}
	if now.Sub(s.floorMovedAt) < reclaimSubjectsEvery || now.Sub(s.subjectsReclaimedAt) < reclaimSubjectsEvery {
		return // the floor moves: the stream-wide purges reclaim in blocks
	}
	s.subjectsReclaimedAt = now
	for _, b := range behind {
		if b.below > floor {
			s.purgeReclaimed(ctx, "subject", b.subject, b.below)
		}
	}
}

// reclaimPlan reads each subject's consumer and returns the stream-wide
// floor, the drained subjects and the bounds of the others; ok is false if
// something could not be read.
func (s *bulkSource) reclaimPlan(ctx context.Context, info *jetstream.StreamInfo) (floor uint64, drained, behind []subjectBound, ok bool) {
	s.mu.Lock()
	convs := make(map[string]jetstream.Consumer, len(s.convs))
	for subj, c := range s.convs {
		convs[subj] = c
	}
	s.mu.Unlock()
	floor = info.State.LastSeq + 1
	for subj, n := range info.State.Subjects {
		if n == 0 {
			continue
		}
		var ci *jetstream.ConsumerInfo
		if c, known := convs[subj]; known {
			var err error
			ci, err = c.Info(ctx)
			if err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
				return 0, nil, nil, false
			}
		}
		if ci == nil {
			raw, err := s.stream.GetMsg(ctx, info.State.FirstSeq, jetstream.WithGetMsgSubject(subj))
			if errors.Is(err, jetstream.ErrMsgNotFound) {
				continue // emptied since (purged by a stop): nothing of it to keep
			}
			if err != nil {
				return 0, nil, nil, false
			}
			floor = min(floor, raw.Sequence)
			continue
		}
		if b, done := ackedBelow(ci); done {
			drained = append(drained, subjectBound{subj, b})
			continue
		}
		floor = min(floor, ci.AckFloor.Stream+1)
		behind = append(behind, subjectBound{subj, ci.AckFloor.Stream + 1})
	}
	return floor, drained, behind, true
}

// ackedBelow returns, for a consumer that has nothing left to deliver and
// nothing delivered unacked, the sequence below which every message of its
// subject is acked, and true.
func ackedBelow(ci *jetstream.ConsumerInfo) (uint64, bool) {
	if ci.NumPending > 0 || ci.NumAckPending > 0 {
		return 0, false
	}
	return max(ci.AckFloor.Stream, ci.Delivered.Stream) + 1, true
}

// purgeReclaimed purges the stream (subj, or all of it when empty) below
// seq and counts what it removed.
func (s *bulkSource) purgeReclaimed(ctx context.Context, how, subj string, seq uint64) {
	n, err := purgeSubject(ctx, s.js, StreamName, subj, seq)
	if err != nil {
		s.log.Warn("reclaiming acked bulk messages failed", "how", how, "err", err)
		return
	}
	s.m.reclaimed.WithLabelValues(how).Add(float64(n))
}
