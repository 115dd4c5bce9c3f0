package wire

import "strings"

// Lane is a class of traffic with its own worker capacity.
type Lane string

// The lanes.
const (
	LaneTransactional Lane = "transactional"
	LaneBulk          Lane = "bulk"
)

// Valid reports whether l is a known lane.
func (l Lane) Valid() bool { return l == LaneTransactional || l == LaneBulk }

// Subject returns sluice.act.<lane>.<tenant>.<conversation>.
func Subject(lane Lane, tenant, conversation string) string {
	return SubjectPrefix + string(lane) + "." + tenant + "." + conversation
}

// SubjectPrefix begins every activation subject.
const SubjectPrefix = "sluice.act."

// SubjectParts splits an activation subject. ok is false when the subject is
// not of the form sluice.act.<lane>.<tenant>.<conversation>.
func SubjectParts(subject string) (lane Lane, tenant, conversation string, ok bool) {
	rest, found := strings.CutPrefix(subject, SubjectPrefix)
	if !found {
		return "", "", "", false
	}
	// Cut rather than Split: no slice to allocate, on every message.
	l, rest, found := strings.Cut(rest, ".")
	if !found {
		return "", "", "", false
	}
	tenant, conversation, found = strings.Cut(rest, ".")
	if !found || strings.Contains(conversation, ".") {
		return "", "", "", false
	}
	return Lane(l), tenant, conversation, true
}

// ValidToken reports whether s can be a tenant or conversation id: 1 to 64
// characters of [A-Za-z0-9_-], so it is always one subject token.
func ValidToken(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}
