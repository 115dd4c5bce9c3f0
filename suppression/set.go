package suppression

import "sync"

// Set is a worker's in-memory copy of every tenant's suppression list: 8
// bytes of each hash, per tenant. Safe for concurrent use; Suppressed takes
// a read lock and computes one HMAC.
type Set struct {
	h *Hasher

	mu      sync.RWMutex
	tenants map[string]map[uint64]struct{}
}

// NewSet returns an empty Set whose lookups hash with h.
func NewSet(h *Hasher) *Set {
	return &Set{h: h, tenants: map[string]map[uint64]struct{}{}}
}

// Suppressed reports whether address is on tenant's list.
func (s *Set) Suppressed(tenant, address string) bool {
	sum, _ := s.h.Sum(address)
	k := short(sum[:])
	s.mu.RLock()
	_, ok := s.tenants[tenant][k]
	s.mu.RUnlock()
	return ok
}

// Len is the number of entries over every tenant.
func (s *Set) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	n := 0
	for _, m := range s.tenants {
		n += len(m)
	}
	return n
}

// Add puts address on tenant's list in this Set only (Reporter and Store
// make it durable and tell the other workers).
func (s *Set) Add(tenant, address string) {
	sum, _ := s.h.Sum(address)
	s.addHash(tenant, sum[:])
}

// addHash adds a stored hash (at least 8 bytes).
func (s *Set) addHash(tenant string, sum []byte) {
	k := short(sum)
	s.mu.Lock()
	m := s.tenants[tenant]
	if m == nil {
		m = map[uint64]struct{}{}
		s.tenants[tenant] = m
	}
	m[k] = struct{}{}
	s.mu.Unlock()
}

// removeHash removes a stored hash.
func (s *Set) removeHash(tenant string, sum []byte) {
	k := short(sum)
	s.mu.Lock()
	if m := s.tenants[tenant]; m != nil {
		delete(m, k)
		if len(m) == 0 {
			delete(s.tenants, tenant)
		}
	}
	s.mu.Unlock()
}

// AddHashes adds hashes (each at least 8 bytes) to tenant's list in this
// Set only; benchmarks and tests fill a Set with it.
func (s *Set) AddHashes(tenant string, sums [][]byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.tenants[tenant]
	if m == nil {
		m = make(map[uint64]struct{}, len(sums))
		s.tenants[tenant] = m
	}
	for _, sum := range sums {
		m[short(sum)] = struct{}{}
	}
}
