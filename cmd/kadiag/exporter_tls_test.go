package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/kadiag/kadiag/internal/testenv"
)

// writeCert writes a self-signed certificate for 127.0.0.1 and its key.
func writeCert(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "kadiag exporter test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// TestExporterTLS: with --web.config.file the exporter serves only TLS
// with basic auth; a real Prometheus scrapes it over TLS with the
// password, and requests without it, with a wrong one, or in plain HTTP
// are refused. A bad web config is a one-line error before listening.
func TestExporterTLS(t *testing.T) {
	testenv.Privileged(t)
	testenv.Need(t, "prometheus")
	dir := t.TempDir()
	cert, key, pool := writeCert(t, dir)
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	webCfg := filepath.Join(dir, "web.yml")
	os.WriteFile(webCfg, []byte(fmt.Sprintf("tls_server_config:\n  cert_file: %s\n  key_file: %s\nbasic_auth_users:\n  prometheus: %s\n", cert, key, hash)), 0o600)
	pwFile := filepath.Join(dir, "password")
	os.WriteFile(pwFile, []byte("s3cret"), 0o600)

	exp := startExporter(t, "--interval", "1s", "--web.config.file", webCfg)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: 10 * time.Second}
	get := func(scheme, user, pass string) int {
		t.Helper()
		req, _ := http.NewRequest("GET", scheme+"://"+exp.addr+"/metrics", nil)
		if user != "" {
			req.SetBasicAuth(user, pass)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", req.URL, err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, tt := range []struct {
		scheme, user, pass string
		want               int
	}{
		{"https", "prometheus", "s3cret", 200},
		{"https", "", "", 401},
		{"https", "prometheus", "wrong", 401},
		{"http", "prometheus", "s3cret", 400}, // Go's answer to plain HTTP on a TLS port
	} {
		if got := get(tt.scheme, tt.user, tt.pass); got != tt.want {
			t.Errorf("%s as %q/%q: %d, want %d", tt.scheme, tt.user, tt.pass, got, tt.want)
		}
	}

	prom := startPrometheusJob(t, fmt.Sprintf(`    scheme: https
    tls_config:
      ca_file: %s
    basic_auth:
      username: prometheus
      password_file: %s
    static_configs:
      - targets: [%q]
`, cert, pwFile, exp.addr))
	if !testenv.WaitUntil(30*time.Second, func() bool {
		up := promQuery(t, prom, `up{job="kadiag"}`)
		scans := promQuery(t, prom, `kadiag_scans_total{job="kadiag"}`)
		return len(up) == 1 && up[0].Value[1] == "1" && len(scans) == 1
	}) {
		t.Fatalf("Prometheus did not scrape the exporter over TLS:\n%s", exp.logText())
	}

	for _, tt := range []struct{ file, contains string }{
		{filepath.Join(dir, "missing.yml"), "--web.config.file " + filepath.Join(dir, "missing.yml")},
		{cert, "--web.config.file " + cert},
	} {
		_, stderr, code := runKadiag(t, "exporter", "--listen", "127.0.0.1:0", "--web.config.file", tt.file)
		if code != 2 || !strings.Contains(stderr, tt.contains) || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
			t.Errorf("bad web config %s: exit %d, %q", tt.file, code, stderr)
		}
	}
}
