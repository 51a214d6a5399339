// goproxy: a reverse proxy built from Go's standard library only, set up the way llama-swap
// sets up its data path, so that bench/proxy_overhead.py can put Go's proxying side by side
// with swapd's on a machine where llama-swap itself cannot be built (no Go module proxy).
//
// What it shares with llama-swap's path for a request to a model that is running:
//   - the request body is read whole and its "model" field decoded (llama-swap reads the body
//     to route it and hands the upstream a copy);
//   - the upstream is reached through httputil.NewSingleHostReverseProxy with an http.Transport
//     of the same pool sizes (MaxIdleConns 100, MaxIdleConnsPerHost 10, HTTP/2 attempted);
//   - with -key, a request must present that API key as a Bearer token (llama-swap's apiKeys);
//   - text/event-stream answers get "X-Accel-Buffering: no" and are flushed after every write
//     (ReverseProxy does this for event streams by itself).
//
// What it leaves out: llama-swap's router, logging, metrics and activity capture, and the
// process checks. So it costs at most what llama-swap costs; swapd ahead of it is ahead of
// llama-swap's proxying too.
//
//	goproxy -listen 127.0.0.1:8080 -route burst=http://127.0.0.1:9001 [-route ...] [-key K]
//	        [-idle-per-host 10]
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"time"
)

type routes map[string]*url.URL

func (r routes) String() string { return strconv.Itoa(len(r)) }

func (r routes) Set(v string) error {
	name, target, ok := strings.Cut(v, "=")
	if !ok {
		return errors.New("want NAME=URL, got " + strconv.Quote(v))
	}
	u, err := url.Parse(target)
	if err != nil {
		return err
	}
	r[name] = u
	return nil
}

// upstream proxies to u, keeping up to idle connections to it alive (llama-swap keeps 10).
func upstream(u *url.URL, idle int) http.Handler {
	p := httputil.NewSingleHostReverseProxy(u)
	p.Transport = &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          100,
		MaxIdleConnsPerHost:   idle,
		IdleConnTimeout:       90 * time.Second,
	}
	p.ModifyResponse = func(resp *http.Response) error {
		if strings.Contains(strings.ToLower(resp.Header.Get("Content-Type")), "text/event-stream") {
			resp.Header.Set("X-Accel-Buffering", "no")
		}
		return nil
	}
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		defer func() { // an upstream gone mid-stream ends the handler with ErrAbortHandler
			if rec := recover(); rec != nil && rec != http.ErrAbortHandler {
				log.Printf("recovered: %v", rec)
			}
		}()
		p.ServeHTTP(w, req)
	})
}

func main() {
	listen := flag.String("listen", "127.0.0.1:8080", "address to serve on")
	idle := flag.Int("idle-per-host", 10, "engine connections kept alive per upstream (llama-swap: 10)")
	key := flag.String("key", "", "when set, requests must present it as a Bearer token")
	table := routes{}
	flag.Var(table, "route", "NAME=URL: requests whose body names model NAME go to URL (repeatable)")
	flag.Parse()
	handlers := map[string]http.Handler{}
	for name, u := range table {
		handlers[name] = upstream(u, *idle)
	}

	mux := http.NewServeMux()
	mux.HandleFunc("/health", func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, "OK")
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, req *http.Request) {
		if *key != "" && req.Header.Get("Authorization") != "Bearer "+*key {
			http.Error(w, "invalid API key", http.StatusUnauthorized)
			return
		}
		body, err := io.ReadAll(req.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var named struct {
			Model string `json:"model"`
		}
		if err := json.Unmarshal(body, &named); err != nil {
			http.Error(w, "bad JSON body", http.StatusBadRequest)
			return
		}
		h, ok := handlers[named.Model]
		if !ok {
			http.Error(w, "no such model", http.StatusNotFound)
			return
		}
		req.Body = io.NopCloser(bytes.NewReader(body))
		req.ContentLength = int64(len(body))
		req.Header.Set("Content-Length", strconv.Itoa(len(body)))
		h.ServeHTTP(w, req)
	})
	log.Fatal(http.ListenAndServe(*listen, mux))
}
