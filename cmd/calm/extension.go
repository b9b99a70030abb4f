package main

import (
	"context"
	"crypto/tls"
	"flag"
	"net"
	"net/http"

	"github.com/redis/rueidis"

	"github.com/calm-limiter/calm/config"
	"github.com/calm-limiter/calm/httplimit"
)

// extension plugs the settings and behaviour of one package (a store, the
// client identity, the defense layers) into `calm serve` and
// `calm check-config`. A file of this package registers it from init with
// addExtension, so a feature joins the gateway by adding one file.
//
// Every field may be nil. calm serve calls them in this order: flags while
// parsing the command line, vars while loading the settings, then setup
// once every setting is valid and before the store opens.
type extension struct {
	// name identifies the extension in messages.
	name string
	// flags adds flags to calm serve. Flags that set a Var should map to it
	// through serveFlags.settings; others store into the extension's state.
	flags func(fs *flag.FlagSet)
	// vars returns the extension's settings, bound to its own state. Their
	// environment variables and file keys join the shared ones, with the
	// same precedence and errors, and the docs list them.
	vars func() []config.Var
	// setup validates the combination of settings and prepares the
	// extension's part of the gateway through the hook fields of gateway
	// (store, keyFunc, configure, middleware, closers, ...). An error stops
	// start-up and is printed as it is, so it should name the setting.
	setup func(ctx context.Context, gw *gateway) error
}

// extensionFactories holds a constructor per extension, in registration
// order; each run of a subcommand builds fresh extensions with fresh state.
var extensionFactories []func() *extension

// addExtension registers an extension constructor. Call it from init.
func addExtension(newExtension func() *extension) {
	extensionFactories = append(extensionFactories, newExtension)
}

// newExtensions builds one instance of every registered extension.
func newExtensions() []*extension {
	exts := make([]*extension, 0, len(extensionFactories))
	for _, newExt := range extensionFactories {
		exts = append(exts, newExt())
	}
	return exts
}

// extensionVars returns the settings of exts in registration order.
func extensionVars(exts []*extension) []config.Var {
	var vars []config.Var
	for _, e := range exts {
		if e.vars != nil {
			vars = append(vars, e.vars()...)
		}
	}
	return vars
}

// allVars returns every setting the gateway reads, in documentation order:
// the shared settings, then those of each extension.
func allVars() []config.Var {
	var s config.Settings
	return append(s.Vars(), extensionVars(newExtensions())...)
}

// hooks are the parts of a gateway that extensions may set in setup. The
// zero value means the built-in behaviour.
type hooks struct {
	// storeName, with store, replaces the memory store; the gateway closes
	// the store at shutdown.
	storeName string
	// keyFunc identifies clients; nil means httplimit.PeerIP.
	keyFunc httplimit.KeyFunc
	// configure adjusts the middleware's configuration, in order.
	configure []func(*httplimit.Config)
	// middleware wraps the limited application, first entry outermost.
	// Health and metrics endpoints are not wrapped.
	middleware []func(http.Handler) http.Handler
	// trustForwarded reports whether the proxy may pass on the
	// X-Forwarded-For chain of a request, because its peer is a trusted
	// proxy. Nil trusts no peer.
	trustForwarded func(r *http.Request) bool
	// tlsConfig, when set, makes calm serve HTTPS on --addr.
	tlsConfig *tls.Config
	// listen, when set, wraps the TCP listener before TLS, and connContext
	// becomes the server's ConnContext; together they let a TLS hook pass
	// per-connection data, such as a ClientHello fingerprint, to handlers.
	listen      func(net.Listener) net.Listener
	connContext func(ctx context.Context, c net.Conn) context.Context
	// redisDial, when set by the extension that opened a Redis store,
	// connects another client to the same Redis, for state shared beside
	// the store such as the circuit breaker.
	redisDial func() (rueidis.Client, error)
	// memoryChosen is true when the operator set
	// RATELIMIT_FALLBACK_TO_MEMORY=true without a Redis URL, choosing
	// per-server memory limits on purpose.
	memoryChosen bool
	// validate runs after every setup and after the store opened, in
	// order; an error stops start-up like a setup error.
	validate []func() error
	// startAttrs are added to the start-up log line.
	startAttrs []any
	// closers run at shutdown after the server drained, last added first,
	// and before the store closes.
	closers []func() error
}
