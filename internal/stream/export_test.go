package stream

import "github.com/redis/go-redis/v9"

// Scripts are every script the package runs, by the lua file that is its
// body (the relay's are prefixed with fence.lua), so the tests can hold
// each one to its KEYS and prove none is left out.
var Scripts = map[string]*redis.Script{
	"publish.lua":     publishScript,
	"start_epoch.lua": startEpochScript,
	"claim_term.lua":  claimTermScript,
	"heartbeat.lua":   heartbeatScript,
	"clock.lua":       clockScript,
	"join_group.lua":  joinGroupScript,
	"reap.lua":        reapScript,
}
