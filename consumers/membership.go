package consumers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Protocol is the consumer-group protocol a Group's members share
// partitions with: Kafka's group.protocol setting, with one more choice.
type Protocol string

const (
	// ProtocolClassic is the JoinGroup/SyncGroup protocol with the
	// cooperative-sticky assignor: the members assign partitions among
	// themselves, and a rebalance moves only the partitions that change
	// owner (the others keep flowing). Every Kafka since 2.4 runs it.
	ProtocolClassic Protocol = "classic"
	// ProtocolConsumer is KIP-848's protocol: the broker's group
	// coordinator assigns (uniform assignor), each member reconciles on
	// its heartbeat, and there is no group-wide synchronisation barrier.
	// It needs Kafka 4.0 or later (franz-go recommends 4.3+); Run refuses
	// to start (ErrProtocolUnsupported) against a cluster without it.
	ProtocolConsumer Protocol = "consumer"
	// ProtocolAuto is ProtocolConsumer when every broker offers it, and
	// ProtocolClassic otherwise, decided once when Run starts.
	ProtocolAuto Protocol = "auto"
)

// DefaultProtocol is the Protocol of a Config that sets none. The
// deployment measurements (README "Running consumer groups on
// Kubernetes") chose it.
const DefaultProtocol = ProtocolClassic

// ErrProtocolUnsupported is returned by Run when Config.Protocol is
// ProtocolConsumer and a broker of the cluster does not offer KIP-848.
var ErrProtocolUnsupported = errors.New("consumers: the cluster does not offer the consumer group protocol (KIP-848, Kafka 4.0+)")

// ParseProtocol reads a Protocol from a flag or an environment variable:
// "classic", "consumer" or "auto"; "" is DefaultProtocol.
func ParseProtocol(s string) (Protocol, error) {
	switch p := Protocol(s); p {
	case "":
		return DefaultProtocol, nil
	case ProtocolClassic, ProtocolConsumer, ProtocolAuto:
		return p, nil
	}
	return "", fmt.Errorf("consumers: group protocol %q: want classic, consumer or auto", s)
}

// resolveProtocol turns ProtocolAuto into what the cluster offers (classic
// for a static member, see Config.InstanceID), and checks that
// ProtocolConsumer is offered. Each broker answers ApiVersions
// with ConsumerGroupHeartbeat v1 (the stable KIP-848 version) when its
// coordinator runs the protocol.
func resolveProtocol(ctx context.Context, adm *kadm.Client, p Protocol, static bool, log *slog.Logger) (Protocol, error) {
	if p == ProtocolClassic {
		return p, nil
	}
	vs, err := adm.ApiVersions(ctx)
	if err != nil {
		return "", fmt.Errorf("consumers: asking the brokers for their protocols: %w", err)
	}
	offered := len(vs) > 0
	for _, v := range vs {
		if v.Err != nil {
			return "", fmt.Errorf("consumers: asking broker %d for its protocols: %w", v.NodeID, v.Err)
		}
		if max, ok := v.KeyMaxVersion(int16(kmsg.ConsumerGroupHeartbeat)); !ok || max < 1 {
			offered = false
		}
	}
	switch {
	case offered && p == ProtocolAuto && static:
		log.Info("consumers: the cluster offers KIP-848, but a static member (InstanceID) uses the classic group protocol (see Config.InstanceID)")
		return ProtocolClassic, nil
	case offered:
		if p == ProtocolAuto {
			log.Info("consumers: the cluster offers KIP-848; using the consumer group protocol")
		}
		return ProtocolConsumer, nil
	case p == ProtocolConsumer:
		return "", ErrProtocolUnsupported
	}
	log.Info("consumers: the cluster does not offer KIP-848; using the classic group protocol")
	return ProtocolClassic, nil
}

// classicHeartbeat is the classic protocol's heartbeat interval (see
// membershipOpts). KIP-848's is the broker's (group.consumer.heartbeat.interval.ms).
const classicHeartbeat = time.Second

// membershipOpts are the group options of the chosen protocol and, with an
// InstanceID, static membership. The retry consumer is a group of its
// own, so the same instance id is unique there too.
func (g *Group) membershipOpts() []kgo.Opt {
	var opts []kgo.Opt
	switch *g.protocol.Load() {
	case ProtocolConsumer:
		// franz-go runs KIP-848 only with the sticky or range balancer
		// named first ("uniform" or "range" on the broker).
		opts = append(opts, kgo.ServerSideBalancer(), kgo.Balancers(kgo.StickyBalancer()))
	default:
		// A member learns that the group rebalances from its next
		// heartbeat: at franz-go's (and Java's) 3 s, every rebalance of
		// a rolling restart held the other members' partitions for 1.5-
		// 2.5 s; at 1 s, about 0.5 s (README, `bench deploy`). The cost
		// is a heartbeat a second per member. ConsumerOpts may set
		// another interval (they come after).
		opts = append(opts, kgo.Balancers(kgo.CooperativeStickyBalancer()), kgo.HeartbeatInterval(classicHeartbeat))
	}
	if g.cfg.InstanceID != "" {
		opts = append(opts, kgo.InstanceID(g.cfg.InstanceID))
	}
	return opts
}
