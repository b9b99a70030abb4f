package redistest

import "testing"

func TestStartAndStop(t *testing.T) {
	s := Start(t)
	if err := Ping(s.Addr); err != nil {
		t.Fatalf("Ping(%s) = %v, want nil", s.Addr, err)
	}
	s.Stop()
	if err := Ping(s.Addr); err == nil {
		t.Fatalf("Ping(%s) after Stop = nil, want an error", s.Addr)
	}
	s.Restart(t)
	if err := Ping(s.Addr); err != nil {
		t.Fatalf("Ping(%s) after Restart = %v, want nil", s.Addr, err)
	}
}
