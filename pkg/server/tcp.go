package server

import (
	"bufio"
	"crypto/subtle"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/js-toolkit/js/pkg/wire"
)

// sniffTimeout bounds how long a TCP connection may stay silent before its
// first byte says which protocol it speaks.
const sniffTimeout = 30 * time.Second

// tcpState are the TCP listeners.
type tcpState struct {
	main        net.Listener // native + gloom + HTTP
	gloomMaster net.Listener
	gloomSlave  net.Listener
	port        int

	mu       sync.Mutex // guards sniffing and closed
	sniffing map[net.Conn]struct{}
	closed   bool
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// listenTCP opens the TCP listeners the config asks for. A non-loopback
// host needs a token, and legacy protocols (which cannot present one) are
// served there only when --allow-unauthenticated names them.
func (s *Server) listenTCP() error {
	cfg := &s.cfg
	wantMain := cfg.Port != 0 || cfg.PortRange[0] != 0
	wantGloom := cfg.GloomPorts[0] != 0
	if !wantMain && !wantGloom {
		return nil
	}
	if !isLoopback(cfg.Host) && cfg.AuthToken == "" && len(cfg.AllowUnauth) == 0 {
		return &UsageError{Err: fmt.Errorf("--host %s is not a loopback address and no --auth-token-file is given", cfg.Host),
			Hint: "anyone who can reach that address could run jobs: give --auth-token-file FILE, bind 127.0.0.1, or name the legacy protocols to serve without a token with --allow-unauthenticated"}
	}
	if wantGloom && s.needsToken() {
		if !cfg.AllowUnauth["gloom"] {
			return &UsageError{Err: errors.New("gloom clients cannot present a token, and the gloom ports would need one here"),
				Hint: "add --allow-unauthenticated gloom to serve them anyway (they can submit and run jobs without a token), or bind the gloom ports on loopback without --auth-token-file"}
		}
	}
	for _, w := range s.warnings() {
		s.log.Printf("warning: %s", w)
	}
	if wantMain {
		ln, err := listenPort(cfg.Host, cfg.Port, cfg.PortRange)
		if err != nil {
			return err
		}
		s.tcp.main = ln
		s.tcp.port = ln.Addr().(*net.TCPAddr).Port
	}
	if wantGloom {
		var err error
		if s.tcp.gloomMaster, err = listenPort(cfg.Host, cfg.GloomPorts[0], [2]int{}); err != nil {
			return err
		}
		if s.tcp.gloomSlave, err = listenPort(cfg.Host, cfg.GloomPorts[1], [2]int{}); err != nil {
			return err
		}
	}
	return nil
}

// needsToken: TCP clients must present the token (or be a legacy protocol
// that --allow-unauthenticated names) unless the listener is on loopback
// without a token file.
func (s *Server) needsToken() bool {
	return s.cfg.AuthToken != "" || !isLoopback(s.cfg.Host)
}

// warnings are the standing warnings jsd repeats in its status.
func (s *Server) warnings() []string {
	var out []string
	for _, p := range []string{"deputy", "gloom", "seamless"} {
		if s.cfg.AllowUnauth[p] && (s.tcp.main != nil || s.tcp.gloomMaster != nil || s.cfg.Port != 0 || s.cfg.PortRange[0] != 0 || s.cfg.GloomPorts[0] != 0) {
			out = append(out, fmt.Sprintf("%s clients are served on TCP without a token (--allow-unauthenticated %s): whoever reaches %s can submit and run jobs", p, p, s.cfg.Host))
		}
	}
	return out
}

// listenPort listens on a fixed port, or on a random free one in a range.
// A busy fixed port is an error at once (seamless-jobserver hung instead).
func listenPort(host string, port int, rng [2]int) (net.Listener, error) {
	if rng[0] == 0 {
		ln, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
		if err != nil {
			return nil, fmt.Errorf("listen on %s port %d: %w", host, port, err)
		}
		return ln, nil
	}
	n := rng[1] - rng[0] + 1
	start := rand.IntN(n)
	for i := 0; i < n; i++ {
		p := rng[0] + (start+i)%n
		ln, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(p)))
		if err == nil {
			return ln, nil
		}
	}
	return nil, fmt.Errorf("no free port in %d..%d on %s", rng[0], rng[1], host)
}

func (s *Server) serveTCP() {
	for _, l := range []struct {
		ln   net.Listener
		kind connKind
	}{{s.tcp.main, connTCP}, {s.tcp.gloomMaster, connGloomMaster}, {s.tcp.gloomSlave, connGloomSlave}} {
		if l.ln == nil {
			continue
		}
		s.wg.Add(1)
		go func() { defer s.wg.Done(); s.acceptLoop(l.ln, l.kind) }()
	}
	s.startHTTP()
}

func (s *Server) closeTCP() {
	for _, ln := range []net.Listener{s.tcp.main, s.tcp.gloomMaster, s.tcp.gloomSlave} {
		if ln != nil {
			ln.Close()
		}
	}
	s.tcp.mu.Lock()
	s.tcp.closed = true
	for nc := range s.tcp.sniffing {
		nc.Close() // still silent: nobody to answer
	}
	s.tcp.mu.Unlock()
	s.stopHTTP()
}

// sniff reads a TCP connection's first byte and hands it to its protocol:
// '{' or whitespace is JSON lines (native/deputy), an upper-case letter is
// HTTP, anything else a gloom frame (a length prefix). The gloom ports
// speak gloom only.
func (s *Server) sniff(nc net.Conn, kind connKind) {
	if kind == connGloomMaster || kind == connGloomSlave {
		s.serveGloom(nc, bufio.NewReaderSize(nc, wire.ReadBuffer), kind)
		return
	}
	br := bufio.NewReaderSize(nc, wire.ReadBuffer)
	s.tcp.mu.Lock()
	if s.tcp.closed {
		s.tcp.mu.Unlock()
		nc.Close()
		return
	}
	if s.tcp.sniffing == nil {
		s.tcp.sniffing = map[net.Conn]struct{}{}
	}
	s.tcp.sniffing[nc] = struct{}{}
	s.tcp.mu.Unlock()
	nc.SetReadDeadline(time.Now().Add(sniffTimeout))
	b, err := br.Peek(1)
	nc.SetReadDeadline(time.Time{})
	s.tcp.mu.Lock()
	delete(s.tcp.sniffing, nc)
	s.tcp.mu.Unlock()
	if err != nil {
		nc.Close()
		return
	}
	switch c := b[0]; {
	case c == '{' || c == ' ' || c == '\t' || c == '\r' || c == '\n':
		s.startConn(nc, br, connTCP)
	case c >= 'A' && c <= 'Z':
		s.serveHTTPConn(nc, br)
	default:
		s.serveGloom(nc, br, connTCP)
	}
}

// authorize checks a native TCP connection's first message: the token, or
// (with --allow-unauthenticated deputy) deputy's own commands only.
func (st *loopState) authorize(c *conn, m *wire.Msg) bool {
	cfg := &st.s.cfg
	if m.Cmd == wire.CmdAuth {
		if cfg.AuthToken != "" && subtle.ConstantTimeCompare([]byte(m.Token), []byte(cfg.AuthToken)) == 1 {
			c.authed = true
			return true
		}
		msg := "wrong token"
		if cfg.AuthToken == "" {
			msg = "this jsd has no token (start it with --auth-token-file); here only what --allow-unauthenticated names is served"
		}
		c.sendError(m.Req, wire.CodeAuth, msg)
		c.closeAfterFlush()
		return false
	}
	if cfg.AllowUnauth["deputy"] {
		switch m.Cmd {
		case wire.CmdCanDo, wire.CmdDo, wire.CmdDid, wire.CmdMetrics:
			return true
		}
	}
	c.sendError(m.Req, wire.CodeAuth, `this listener needs a token: send {"cmd":"auth","token":"..."} first`)
	c.closeAfterFlush()
	return false
}
