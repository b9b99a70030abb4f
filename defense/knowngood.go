package defense

import (
	"crypto/sha256"
	"sync"
	"time"
)

// knownGood remembers, per verified identity, when the layers first allowed
// it and when it last violated a per-client limit. It is bounded: when full,
// it drops clients not seen for a violation window, and clients that still
// do not fit are never known-good.
//
// NOTE: the history is per server. A client whose history lives on another
// server is not known-good here, and a violation on another server is not
// seen here; sticky load balancing makes the two agree.
type knownGood struct {
	mu        sync.Mutex
	max       int
	window    time.Duration
	clients   map[[16]byte]*clientHistory
	lastSweep time.Time
}

type clientHistory struct {
	firstAllowed  time.Time
	lastViolation time.Time
	lastSeen      time.Time
}

func newKnownGood(maxClients int, window time.Duration) *knownGood {
	return &knownGood{max: maxClients, window: window, clients: make(map[[16]byte]*clientHistory)}
}

// identityKey hashes an identity so that long identities cost fixed memory.
func identityKey(identity string) [16]byte {
	sum := sha256.Sum256([]byte(identity))
	var k [16]byte
	copy(k[:], sum[:16])
	return k
}

// entry returns the history of identity, creating it when there is room.
// Callers hold k.mu.
func (k *knownGood) entry(identity string, now time.Time) *clientHistory {
	key := identityKey(identity)
	if h, ok := k.clients[key]; ok {
		h.lastSeen = now
		return h
	}
	if len(k.clients) >= k.max {
		k.sweep(now)
		if len(k.clients) >= k.max {
			return nil
		}
	}
	h := &clientHistory{lastSeen: now}
	k.clients[key] = h
	return h
}

// sweep drops clients not seen for a window, at most once per window.
// Callers hold k.mu.
func (k *knownGood) sweep(now time.Time) {
	if now.Sub(k.lastSweep) < k.window {
		return
	}
	k.lastSweep = now
	for key, h := range k.clients {
		if now.Sub(h.lastSeen) >= k.window {
			delete(k.clients, key)
		}
	}
}

func (k *knownGood) allowed(identity string, now time.Time) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if h := k.entry(identity, now); h != nil && h.firstAllowed.IsZero() {
		h.firstAllowed = now
	}
}

func (k *knownGood) violated(identity string, now time.Time) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if h := k.entry(identity, now); h != nil {
		h.lastViolation = now
	}
}

// check reports whether identity is known-good at now for an open that
// began at since: allowed before since, and no violation within a window.
func (k *knownGood) check(identity string, since, now time.Time) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	h, ok := k.clients[identityKey(identity)]
	if !ok || h.firstAllowed.IsZero() || !h.firstAllowed.Before(since) {
		return false
	}
	return h.lastViolation.IsZero() || now.Sub(h.lastViolation) >= k.window
}
