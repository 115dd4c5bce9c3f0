package errorlog

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// multirange renders sequences as an int8multirange literal of maximal runs,
// e.g. {[1,4),[7,8)}.
func multirange(seqs []uint64) string {
	slices.Sort(seqs)
	var sb strings.Builder
	sb.WriteByte('{')
	for i := 0; i < len(seqs); {
		j := i
		for j+1 < len(seqs) && seqs[j+1] <= seqs[j]+1 {
			j++
		}
		if i > 0 {
			sb.WriteByte(',')
		}
		fmt.Fprintf(&sb, "[%d,%d)", seqs[i], seqs[j]+1)
		i = j + 1
	}
	sb.WriteByte('}')
	return sb.String()
}

// rangeSet is a set of stream sequences as sorted, disjoint half-open
// ranges [lo, hi), read back from an int8multirange.
type rangeSet [][2]uint64

// has reports whether seq is in the set.
func (r rangeSet) has(seq uint64) bool {
	i, _ := slices.BinarySearchFunc(r, seq, func(rg [2]uint64, s uint64) int {
		switch {
		case rg[1] <= s:
			return -1
		case rg[0] > s:
			return 1
		}
		return 0
	})
	return i < len(r) && r[i][0] <= seq && seq < r[i][1]
}

// parseMultirange reads Postgres's text form of a canonical int8multirange,
// e.g. {} or {[1,4),[7,8)}.
func parseMultirange(s string) (rangeSet, error) {
	body, ok := strings.CutPrefix(s, "{")
	if body, ok = strings.CutSuffix(body, "}"); !ok {
		return nil, fmt.Errorf("errorlog: multirange %q: want {...}", s)
	}
	if body == "" {
		return nil, nil
	}
	var out rangeSet
	for part := range strings.SplitSeq(body, "),") {
		part = strings.TrimSuffix(strings.TrimPrefix(part, "["), ")")
		lo, hi, ok := strings.Cut(part, ",")
		a, err1 := strconv.ParseUint(lo, 10, 64)
		b, err2 := strconv.ParseUint(hi, 10, 64)
		if !ok || err1 != nil || err2 != nil || a >= b || (len(out) > 0 && a < out[len(out)-1][1]) {
			return nil, fmt.Errorf("errorlog: multirange %q: bad range %q", s, part)
		}
		out = append(out, [2]uint64{a, b})
	}
	return out, nil
}

// repeats reports whether sorted holds a sequence twice.
func repeats(sorted []uint64) bool {
	for i := 1; i < len(sorted); i++ {
		if sorted[i] == sorted[i-1] {
			return true
		}
	}
	return false
}
