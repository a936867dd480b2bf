package broker

import (
	"net/http"
	"net/http/pprof"
)

// registerDebug mounts Go's profiler on /debug/pprof/ when `debug` is set,
// as Emitter does, for operators chasing CPU or memory. It is off by
// default: profiles reveal internals and cost CPU while they run.
func (s *Server) registerDebug(mux *http.ServeMux) {
	if !s.cfg.Debug {
		return
	}
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
}
