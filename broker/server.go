package broker

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/pubsub/pubsub/broker/cluster"
	"github.com/pubsub/pubsub/broker/store"
	"github.com/pubsub/pubsub/broker/topic"
	"github.com/pubsub/pubsub/keys"
	"github.com/pubsub/pubsub/stats"
)

// Server is one broker node: the listener, the sessions and the routing
// between them. Create it with New, start it with Start, stop it with Close.
type Server struct {
	cfg Config
	log *slog.Logger

	trie  *topic.Trie[*session]
	store store.Store
	ids   *store.IDGenerator
	// cluster is this node's cluster member; nil when clustering is off.
	cluster *cluster.Node
	// saver writes persistent sessions to the store (sessionstore.go).
	saver sessionSaver

	// presence indexes Emitter presence watches (presence.go).
	presence *presenceHub

	rpcConns    sync.Map // *rpcConn -> struct{}
	rpcUpgrader *websocket.Upgrader
	sseConns    sync.Map // *sseStream -> struct{}: for keepalives and key expiry
	// rateLimits counts publishes against Eventhub's rlimit claims.
	rateLimits rateWindows

	mu        sync.Mutex // guards sessions; see LOCKS.md for the order
	sessions  map[string]*session
	online    atomic.Int64 // clients past CONNECT
	nextAnon  atomic.Uint64
	conns     sync.Map // *conn -> struct{}: every live MQTT connection, for shutdown
	listeners []net.Listener
	httpLn    *connListener
	httpSrv   *http.Server

	// tlsSrv is the TLS side (nil when TLS is off); tlsLn its listener
	// once Start has bound it.
	tlsSrv *tlsServer
	tlsLn  net.Listener

	mqttUpgrader *websocket.Upgrader

	// stats holds the node's figures; its methods are single atomic ops.
	stats *stats.Node
	// gauges last carried into stats (see Snapshot)
	reportedConns, reportedSubs atomic.Int64
	denied                      atomic.Uint64 // publishes and subscriptions refused by keys

	keyring       *keys.Keyring
	revocations   *keys.Revocations
	secretCreated bool

	// flushWork hands connections with pending bytes to idle flushers.
	flushWork chan *conn

	closing atomic.Bool
	done    chan struct{}
	wg      sync.WaitGroup
}

// New checks cfg and builds a server; nothing is bound until Start.
func New(cfg Config, logger *slog.Logger) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		cfg:       cfg,
		log:       logger,
		trie:      topic.NewTrie[*session](0),
		presence:  newPresenceHub(),
		sessions:  make(map[string]*session),
		done:      make(chan struct{}),
		flushWork: make(chan *conn),
	}
	s.mqttUpgrader = s.newUpgrader(mqttSubprotocols)
	s.stats = stats.NewNode(stats.Info{Name: nodeName(cfg), Address: cfg.Listen, Version: cfg.Version, Start: time.Now()})
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data dir %s: %w", cfg.DataDir, err)
	}
	if err := s.setupKeys(); err != nil {
		return nil, err
	}
	if err := s.openStore(); err != nil {
		// One line that says what to do next (DESIGN §1).
		return nil, fmt.Errorf("%w (docs/storage.md, \"Damage and recovery\", says what to do)", err)
	}
	s.restoreSessions()
	if err := s.newClusterNode(); err != nil {
		return nil, err
	}
	s.rpcUpgrader = s.newUpgrader(nil)
	s.rpcUpgrader.HandshakeTimeout = time.Duration(cfg.JSONRPC.HandshakeTimeout)
	tlsSrv, err := newTLSServer(cfg, logger)
	if err != nil {
		return nil, err
	}
	s.tlsSrv = tlsSrv
	return s, nil
}

// Start binds the listen address, and tls.listen when TLS is on, and serves
// in the background. A port in use or a bad address fails here, before
// anything else starts (I2).
func (s *Server) Start() error {
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", s.cfg.Listen, err)
	}
	tlsLn, err := s.listenTLS()
	if err != nil {
		ln.Close()
		return err
	}
	if err := s.startCluster(); err != nil {
		ln.Close()
		if tlsLn != nil {
			tlsLn.Close()
		}
		return err
	}
	s.Serve(ln)
	if tlsLn != nil {
		s.serveTLS(tlsLn)
	}
	return nil
}

// Serve serves on an already bound listener (tests pass 127.0.0.1:0). It
// does not start TLS; Start does.
func (s *Server) Serve(ln net.Listener) {
	s.listeners = append(s.listeners, ln)
	s.httpLn = newConnListener(ln.Addr())
	s.httpSrv = &http.Server{
		Handler:           s.withTLSState(s.httpHandler()),
		ConnContext:       httpConnContext,
		ReadHeaderTimeout: time.Duration(s.cfg.JSONRPC.HandshakeTimeout), // C10: slowloris upgrades
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	s.wg.Add(4)
	go s.statsLoop()
	s.wg.Add(1)
	go s.expireLoop()
	go s.keyEnforcer()
	s.wg.Add(1)
	go s.keepaliveLoop()
	s.wg.Add(1)
	go s.sessionSaverLoop()
	go s.acceptLoop(ln, s.httpLn)
	go func() {
		defer s.wg.Done()
		_ = s.httpSrv.Serve(s.httpLn)
	}()
	s.log.Info("listening", "addr", ln.Addr().String(), "protocols", "mqtt,mqtt-ws,http")
}

// Addr is the first listener's address, or nil before Serve.
func (s *Server) Addr() net.Addr {
	if len(s.listeners) == 0 {
		return nil
	}
	return s.listeners[0].Addr()
}

// Close stops accepting, closes every client and waits for all goroutines.
// Wills are not published for clients the node itself disconnects.
func (s *Server) Close() error {
	if !s.closing.CompareAndSwap(false, true) {
		return nil
	}
	close(s.done)
	s.stopCluster()
	for _, ln := range s.listeners {
		_ = ln.Close()
	}
	if s.httpLn != nil {
		_ = s.httpLn.Close()
	}
	if s.httpSrv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = s.httpSrv.Shutdown(ctx)
		cancel()
	}
	s.conns.Range(func(k, _ any) bool {
		k.(*conn).nc.Close()
		return true
	})
	s.rpcConns.Range(func(k, _ any) bool {
		k.(*rpcConn).ws.Close()
		return true
	})
	s.wg.Wait()
	if s.store != nil {
		// What the last detaching connections asked the saver for.
		s.flushSessions()
		if err := s.store.Close(); err != nil {
			s.log.Error("store close", "err", err)
		}
	}
	return nil
}

// Done is closed when Close starts.
func (s *Server) Done() <-chan struct{} { return s.done }

// Counters is a point-in-time view of the node's main figures.
type Counters struct {
	Connections   int64
	Sessions      int
	Subscriptions int
	Retained      int
	MessagesIn    uint64
	MessagesOut   uint64
	Dropped       uint64
	SlowConsumers uint64
	Denied        uint64 // publishes and subscriptions refused by keys
}

// Counters reads the node's figures (for stats and tests).
func (s *Server) Counters() Counters {
	s.mu.Lock()
	n := len(s.sessions)
	s.mu.Unlock()
	snap := s.Snapshot()
	return Counters{
		Connections:   s.online.Load(),
		Sessions:      n,
		Subscriptions: s.trie.Len(),
		Retained:      int(snap.Retained),
		MessagesIn:    snap.MessagesIn,
		MessagesOut:   snap.MessagesOut,
		Dropped:       snap.Dropped,
		SlowConsumers: snap.SlowConsumers,
		Denied:        s.denied.Load(),
	}
}

func (s *Server) httpHandler() http.Handler {
	mux := http.NewServeMux()
	health := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Access-Control-Allow-Origin", "*")
		status, code := "ok", http.StatusOK
		if s.closing.Load() {
			status, code = "shutting down", http.StatusServiceUnavailable
		}
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(map[string]string{"status": status})
	}
	mux.HandleFunc("/healthz", health)
	mux.HandleFunc("/health", health) // Emitter's path
	mux.HandleFunc("/livez", health)
	mux.HandleFunc("/readyz", health)
	mux.HandleFunc("/stats", s.serveStats)
	s.registerDebug(mux)
	mux.Handle("/metrics", s.metricsHandler())
	mux.HandleFunc("/keygen", s.serveKeygen)
	mux.HandleFunc("/api/publish", s.serveHTTPPublish)
	mux.HandleFunc("/api/cluster/", s.serveClusterAPI)
	root := func(w http.ResponseWriter, r *http.Request) {
		// Eventhub routes on Accept before Upgrade (eventhub.md §1.1 #6).
		if r.Header.Get("Accept") == "text/event-stream" {
			s.serveSSE(w, r)
			return
		}
		if websocket.IsWebSocketUpgrade(r) {
			if offersMQTT(r) {
				s.serveMQTTWebSocket(w, r)
				return
			}
			s.serveJSONRPC(w, r)
			return
		}
		http.Error(w, "pubsub: no such endpoint (MQTT over TCP or WebSocket, /healthz)", http.StatusNotFound)
	}
	mux.HandleFunc("/", root)
	return withCORS(withRawPaths(mux, root))
}
