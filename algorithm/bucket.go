package algorithm

// decideBucket is the token bucket and the leaky bucket as a meter. The
// two are one computation seen from two sides: the token deficit of a token
// bucket is the water level of a leaky bucket.
//
// A bucket of capacity c that refills (or drains) continuously at Quota per
// Window is GCRA with emission interval T = Window/Quota and tolerance
// τ = (c − 1) × T. Its deficit at time now is (TAT − now)/T units, where
// the TAT is the time at which the bucket is full (or empty) again, so a
// request of cost n fits exactly when GCRA lets it conform. The buckets
// therefore keep GCRA's state, the TAT in whole microseconds plus a
// remainder in 1/Quota µs, and decide with decideGCRA. The remainder lies
// below Quota, so stores can pack the state as tightly as GCRA's.
//
// While the clock moves forward this decides exactly as a bucket that
// stores its level and the time of its last charge. After a clock step
// back it counts the step as deficit still to refill, as GCRA does, so it
// is the stricter of the two.
func decideBucket(s State, now int64, l Limit, cost int64) (State, Decision) {
	return decideGCRA(s, now, l, cost)
}
