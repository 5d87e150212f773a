package registry

import (
	"context"
	"errors"
	"net"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Apache Kafka answers for a topic created moments ago without its
// partitions until the controller's metadata reaches the broker (a CI run
// on Kafka 4.4 failed Load that way). Load waits that out; a topic error
// that retrying cannot cure is returned at once.
func TestLoadWaitsForANewTopicsMetadata(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		code  int16
		times int32
		ok    bool
	}{
		{name: "not yet known", code: kerr.UnknownTopicOrPartition.Code, times: 3, ok: true},
		{name: "no leader yet", code: kerr.LeaderNotAvailable.Code, times: 2, ok: true},
		{name: "not authorized", code: kerr.TopicAuthorizationFailed.Code, times: 1 << 30},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := kfake.NewCluster(kfake.NumBrokers(1))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			const topic = "_schemas"
			s, err := NewKafkaStore(ctx, c.ListenAddrs(), topic)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			var answered atomic.Int32
			c.ControlKey(int16(kmsg.Metadata), func(req kmsg.Request) (kmsg.Response, error, bool) {
				c.KeepControl()
				mreq := req.(*kmsg.MetadataRequest)
				asks := mreq.Topics == nil // every topic
				for _, rt := range mreq.Topics {
					asks = asks || rt.Topic != nil && *rt.Topic == topic
				}
				if !asks || answered.Load() >= tc.times {
					return nil, nil, false
				}
				answered.Add(1)
				resp := req.ResponseKind().(*kmsg.MetadataResponse)
				resp.SetVersion(req.GetVersion())
				for _, addr := range c.ListenAddrs() {
					host, port, _ := net.SplitHostPort(addr)
					p, _ := strconv.Atoi(port)
					resp.Brokers = append(resp.Brokers, kmsg.MetadataResponseBroker{NodeID: 0, Host: host, Port: int32(p)})
				}
				mt := kmsg.NewMetadataResponseTopic()
				mt.Topic = kmsg.StringPtr(topic)
				mt.ErrorCode = tc.code
				resp.Topics = append(resp.Topics, mt)
				return resp, nil, true
			})
			err = s.Load(ctx, func(string, []byte) error { return nil })
			switch {
			case tc.ok && err != nil:
				t.Fatalf("Load after %d answers of %s: %v", tc.times, kerr.ErrorForCode(tc.code), err)
			case tc.ok && answered.Load() != tc.times:
				t.Fatalf("the broker answered %d times without the topic, want %d", answered.Load(), tc.times)
			case !tc.ok && !errors.Is(err, kerr.TopicAuthorizationFailed):
				t.Fatalf("Load with the topic refused: %v, want TopicAuthorizationFailed", err)
			case !tc.ok && answered.Load() != 1:
				t.Fatalf("a refused topic was asked about %d times, want 1", answered.Load())
			}
		})
	}
}
