package exporter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/exporter-toolkit/web"
)

// Handler serves /metrics (the exporter's metrics plus the Go runtime's
// and process's own, for its memory and CPU), /healthz (liveness: scans
// keep finishing), /readyz (readiness: a scan has completed) and an index at /.
func (e *Exporter) Handler() http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(e, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mux := http.NewServeMux()
	// A metric that cannot be rendered costs only itself: the rest is
	// served, the error is logged and counted in
	// promhttp_metric_handler_errors_total.
	mux.Handle("GET /metrics", promhttp.InstrumentMetricHandler(reg, promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorHandling:       promhttp.ContinueOnError,
		ErrorLog:            slog.NewLogLogger(e.o.Logger.Handler(), slog.LevelError),
		MaxRequestsInFlight: 4,
	})))
	mux.HandleFunc("GET /healthz", probe(e.Healthy))
	mux.HandleFunc("GET /readyz", probe(e.Ready))
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "kadiag exporter: /metrics, /healthz, /readyz")
	})
	return mux
}

// ShutdownTimeout bounds how long Serve waits for scrapes in flight once
// its context ends.
const ShutdownTimeout = 5 * time.Second

// Serve runs the scan loop and serves Handler on ln (with TLS and basic
// auth when Options.WebConfigFile says so) until ctx ends, then
// stops accepting, lets scrapes in flight finish and waits for the scan
// loop. It returns nil after a clean shutdown.
func (e *Exporter) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           e.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	var wg sync.WaitGroup
	loopCtx, stopLoop := context.WithCancel(ctx)
	defer stopLoop()
	wg.Add(1)
	go func() {
		defer wg.Done()
		e.Run(loopCtx)
	}()
	errc := make(chan error, 1)
	go func() {
		// exporter-toolkit serves plain HTTP without a web config, and TLS
		// and basic auth as its file says (node_exporter's --web.config.file),
		// re-reading the file and certificates on new connections.
		path := e.o.WebConfigFile
		errc <- web.Serve(ln, srv, &web.FlagConfig{WebConfigFile: &path}, e.o.Logger)
	}()
	var err error
	select {
	case err = <-errc:
		// The listener failed: nothing is served, so stop.
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), ShutdownTimeout)
		err = srv.Shutdown(sctx)
		cancel()
		if serr := <-errc; !errors.Is(serr, http.ErrServerClosed) && err == nil {
			err = serr
		}
	}
	stopLoop()
	wg.Wait()
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// probe answers 200 "ok" while check passes, else 503 with its reason.
func probe(check func() error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := check(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	}
}

// CheckWebConfig reads a --web.config.file (TLS certificates and key, basic
// auth users with bcrypt hashes) as Serve will, so a bad file is refused
// before the exporter starts; "" is no file (plain HTTP).
func CheckWebConfig(path string) error {
	return web.Validate(path)
}
