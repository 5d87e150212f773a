// Package devbroker runs franz-go's kfake as eventline's embedded Kafka
// broker (`eventline dev`, the test suite), with one addition: it expires
// the classic-group members kfake loses track of.
//
// # The kfake gap it closes
//
// kfake starts a member's session timer when it delivers the member's
// JoinGroup or SyncGroup response. When the member's connection died while
// that request was parked (a process SIGKILLed mid-rebalance), delivery
// fails and the member never gets a timer: it stays in the group, and every
// later rebalance waits for it until the rebalance timeout, which surviving
// members keep resetting by rejoining. A group of crashing consumers can
// wedge for minutes. Apache Kafka expires such a member by its session
// timeout, counted from the completion of the join or sync.
//
// The fix belongs in kfake (docs/upstream/kfake-dead-member.patch is the
// one-line change with its regression test, ready to offer upstream). Until
// a kfake release carries it, eventline does not fork kfake; it watches the
// broker's connections from outside instead:
//
//   - every connection is wrapped (kfake's ListenFn option), and the group
//     requests read from it (JoinGroup, SyncGroup, Heartbeat, OffsetCommit,
//     LeaveGroup) are decoded with kmsg to learn which member last spoke on
//     which connection, and its session timeout;
//   - when a connection closes, the members whose latest request came on it
//     become suspects; a suspect that sends nothing on any connection for
//     its session timeout is removed with a LeaveGroup on its behalf, which
//     is what Apache Kafka's session expiry would have done.
//
// A live member is never removed: its connection is open, or it has spoken
// again on another one (a client whose connection broke retries there). A
// member kfake already expired gets UNKNOWN_MEMBER_ID, which is ignored.
// KIP-848 groups and members that never joined with a member id are left to
// kfake.
//
// # Refused credentials
//
// kfake answers a SASLAuthenticate with wrong credentials by closing the
// connection. A client sees EOF, which it takes for a network failure and
// retries for ever: a relay with a wrong password would hang instead of
// failing. Apache Kafka answers SASL_AUTHENTICATION_FAILED first, which
// clients treat as final. When kfake closes a connection whose
// SASLAuthenticate it never answered, the wrapper writes that answer
// before the close. The fix for kfake itself, with its regression test, is
// docs/upstream/kfake-sasl-refusal.patch. Reading the Kafka framing by hand is what this package adds to
// kfake: no library exposes a broker's inbound requests, and kfake's
// Control hook does not say which connection a request came on.
package devbroker

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kbin"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Broker is a running kfake cluster with the member guard.
type Broker struct {
	*kfake.Cluster
	g *guard
}

// Options tunes the guard; the zero value is what eventline dev uses.
type Options struct {
	// Logger receives one line per member removed (default: discard).
	Logger *slog.Logger
	// ClientOpts are added to the guard's own client, which sends the
	// LeaveGroup requests (SASL credentials when the cluster enables SASL).
	ClientOpts []kgo.Opt
	// TLS, when set, makes the broker serve TLS. Use it rather than
	// kfake.TLS: the guard reads requests above TLS, kfake's own TLS
	// listener would sit above the guard and hide them.
	TLS *tls.Config
}

// defaultSession is assumed for a member whose JoinGroup was never seen
// (it joined before this broker started): Kafka's default session timeout.
const defaultSession = 45 * time.Second

// New starts a kfake cluster with opts and the guard.
func New(o Options, opts ...kfake.Opt) (*Broker, error) {
	g := newGuard(o)
	c, err := kfake.NewCluster(append(opts, kfake.ListenFn(g.listen))...)
	if err != nil {
		g.stop()
		return nil, err
	}
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(c.ListenAddrs()...), kgo.RequestRetries(2)}, o.ClientOpts...)...)
	if err != nil {
		c.Close()
		g.stop()
		return nil, err
	}
	g.start(cl)
	return &Broker{Cluster: c, g: g}, nil
}

// Close stops the guard and the cluster.
func (b *Broker) Close() {
	b.g.stop()
	b.Cluster.Close()
}

// Removed returns how many members the guard has removed.
func (b *Broker) Removed() int64 {
	b.g.mu.Lock()
	defer b.g.mu.Unlock()
	return b.g.removed
}

type memberKey struct{ group, member string }

type member struct {
	conn      *conn         // the connection its latest group request came on
	seen      time.Time     // when that request was read
	session   time.Duration // from its latest JoinGroup
	suspectAt time.Time     // when conn closed; zero while it is open
}

type guard struct {
	log *slog.Logger
	tls *tls.Config

	mu      sync.Mutex
	members map[memberKey]*member
	removed int64

	cl     *kgo.Client
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
}

func newGuard(o Options) *guard {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &guard{log: log, tls: o.TLS, members: map[memberKey]*member{}, ctx: ctx, cancel: cancel, done: make(chan struct{})}
}

func (g *guard) start(cl *kgo.Client) {
	g.cl = cl
	go g.run()
}

func (g *guard) stop() {
	g.cancel()
	if g.cl != nil {
		<-g.done
		g.cl.Close()
	}
}

// listen is kfake's ListenFn: a TCP listener (TLS when Options.TLS is
// set) whose connections report their group requests and their end to the
// guard.
func (g *guard) listen(network, address string) (net.Listener, error) {
	ln, err := net.Listen(network, address)
	if err != nil {
		return nil, err
	}
	if g.tls != nil {
		ln = tls.NewListener(ln, g.tls)
	}
	return &listener{Listener: ln, g: g}, nil
}

type listener struct {
	net.Listener
	g *guard
}

func (l *listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &conn{Conn: c, g: l.g}, nil
}

// seen records a group request of m read from c.
func (g *guard) seen(k memberKey, c *conn, session time.Duration) {
	g.mu.Lock()
	defer g.mu.Unlock()
	m := g.members[k]
	if m == nil {
		m = &member{session: defaultSession}
		g.members[k] = m
	}
	m.conn, m.seen, m.suspectAt = c, time.Now(), time.Time{}
	if session > 0 {
		m.session = session
	}
}

func (g *guard) left(k memberKey) {
	g.mu.Lock()
	delete(g.members, k)
	g.mu.Unlock()
}

// closed marks the members whose latest request came on c as suspects.
func (g *guard) closed(c *conn) {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := time.Now()
	for _, m := range g.members {
		if m.conn == c && m.suspectAt.IsZero() {
			m.suspectAt = now
		}
	}
}

// due returns the suspects silent for their session timeout, forgetting
// them.
func (g *guard) due(now time.Time) []memberKey {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []memberKey
	for k, m := range g.members {
		if !m.suspectAt.IsZero() && now.Sub(m.suspectAt) >= m.session {
			out = append(out, k)
			delete(g.members, k)
		}
	}
	return out
}

func (g *guard) run() {
	defer close(g.done)
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-g.ctx.Done():
			return
		case now := <-t.C:
			for _, k := range g.due(now) {
				g.remove(k)
			}
		}
	}
}

// remove sends the LeaveGroup the dead member cannot send.
func (g *guard) remove(k memberKey) {
	req := kmsg.NewPtrLeaveGroupRequest()
	req.Group = k.group
	m := kmsg.NewLeaveGroupRequestMember()
	m.MemberID = k.member
	reason := "eventline dev: connection closed and no request for the session timeout"
	m.Reason = &reason
	req.Members = append(req.Members, m)
	ctx, cancel := context.WithTimeout(g.ctx, 10*time.Second)
	defer cancel()
	resp, err := req.RequestWith(ctx, g.cl)
	if err != nil {
		g.log.Warn("kafka: removing a dead group member failed", "group", k.group, "member", k.member, "err", err)
		return
	}
	if len(resp.Members) == 1 && resp.Members[0].ErrorCode == 0 && resp.ErrorCode == 0 {
		g.mu.Lock()
		g.removed++
		g.mu.Unlock()
		g.log.Info("kafka: removed a group member whose process is gone (its connection closed and it sent nothing for its session timeout)",
			"group", k.group, "member", k.member)
	}
}

// maxSniffed bounds the group requests decoded: larger frames are skipped.
const maxSniffed = 1 << 20

// conn passes bytes through and decodes the group requests among them.
type conn struct {
	net.Conn
	g *guard

	mu   sync.Mutex
	head []byte // the current frame's bytes read so far (up to its key), or all of it when decoded
	size int    // the current frame's length, once known
	skip int    // bytes of an uninteresting frame still to pass
	off  bool   // the stream stopped looking like Kafka framing
	once sync.Once

	// auth is the SASLAuthenticate read and not answered yet (nil when
	// none): kfake closes the connection instead of refusing it.
	auth *kmsg.SASLAuthenticateRequest
	corr int32
}

func (c *conn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.feed(p[:n])
	}
	if err != nil {
		c.end()
	}
	return n, err
}

func (c *conn) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.auth = nil // kfake answered it (SASL requests are not pipelined)
	c.mu.Unlock()
	return c.Conn.Write(p)
}

func (c *conn) Close() error {
	c.end()
	c.mu.Lock()
	auth, corr := c.auth, c.corr
	c.auth = nil
	c.mu.Unlock()
	if auth != nil {
		c.refuse(auth, corr)
	}
	return c.Conn.Close()
}

// refuse writes the SASL_AUTHENTICATION_FAILED answer Apache Kafka gives
// to wrong credentials (bounded by a short deadline: the client may be
// gone too).
func (c *conn) refuse(req *kmsg.SASLAuthenticateRequest, corr int32) {
	resp := req.ResponseKind().(*kmsg.SASLAuthenticateResponse)
	resp.ErrorCode = kerr.SaslAuthenticationFailed.Code
	msg := "Authentication failed: invalid credentials"
	resp.ErrorMessage = &msg
	buf := make([]byte, 4, 64)
	buf = binary.BigEndian.AppendUint32(buf, uint32(corr))
	if resp.IsFlexible() {
		buf = append(buf, 0) // the response header's empty tag buffer
	}
	buf = resp.AppendTo(buf)
	binary.BigEndian.PutUint32(buf, uint32(len(buf)-4))
	_ = c.Conn.SetWriteDeadline(time.Now().Add(time.Second))
	_, _ = c.Conn.Write(buf)
}

func (c *conn) end() { c.once.Do(func() { c.g.closed(c) }) }

// feed consumes a chunk of the inbound stream: 4-byte length, then the
// request (key, version, correlation id, client id, body).
func (c *conn) feed(b []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(b) > 0 && !c.off {
		if c.skip > 0 {
			n := min(c.skip, len(b))
			c.skip -= n
			b = b[n:]
			continue
		}
		if c.size == 0 { // reading the 6 bytes of length and key
			n := min(6-len(c.head), len(b))
			c.head = append(c.head, b[:n]...)
			b = b[n:]
			if len(c.head) < 6 {
				return
			}
			size := int(int32(binary.BigEndian.Uint32(c.head)))
			if size < 2 {
				c.off = true
				return
			}
			switch int16(binary.BigEndian.Uint16(c.head[4:])) {
			case 8, 11, 12, 13, 14, 36: // OffsetCommit, JoinGroup, Heartbeat, LeaveGroup, SyncGroup, SASLAuthenticate
				if size <= maxSniffed {
					c.size = size
					c.head = append(c.head[:0], c.head[4:]...)
					continue
				}
			}
			c.skip = size - 2
			c.head = c.head[:0]
			continue
		}
		n := min(c.size-len(c.head), len(b))
		c.head = append(c.head, b[:n]...)
		b = b[n:]
		if len(c.head) == c.size {
			c.decode(c.head)
			c.head, c.size = c.head[:0], 0
		}
	}
}

func (c *conn) decode(frame []byte) {
	r := kbin.Reader{Src: frame}
	key, version := r.Int16(), r.Int16()
	corr := r.Int32()
	r.NullableString()
	req := kmsg.RequestForKey(key)
	if req == nil {
		return
	}
	req.SetVersion(version)
	if req.IsFlexible() {
		kmsg.SkipTags(&r)
	}
	if r.Complete() != nil || req.ReadFrom(r.Src) != nil {
		return
	}
	switch q := req.(type) {
	case *kmsg.SASLAuthenticateRequest:
		q.SASLAuthBytes = nil    // the credentials: not kept
		c.auth, c.corr = q, corr // under c.mu (feed holds it)
	case *kmsg.JoinGroupRequest:
		if q.MemberID != "" { // a first join's id comes in the answer; kfake times those
			c.g.seen(memberKey{q.Group, q.MemberID}, c, time.Duration(q.SessionTimeoutMillis)*time.Millisecond)
		}
	case *kmsg.SyncGroupRequest:
		c.g.seen(memberKey{q.Group, q.MemberID}, c, 0)
	case *kmsg.HeartbeatRequest:
		c.g.seen(memberKey{q.Group, q.MemberID}, c, 0)
	case *kmsg.OffsetCommitRequest:
		if q.MemberID != "" && q.Generation >= 0 {
			c.g.seen(memberKey{q.Group, q.MemberID}, c, 0)
		}
	case *kmsg.LeaveGroupRequest:
		if q.Version < 3 {
			c.g.left(memberKey{q.Group, q.MemberID})
		}
		for _, m := range q.Members {
			c.g.left(memberKey{q.Group, m.MemberID})
		}
	}
}
