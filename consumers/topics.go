package consumers

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
)

// RetryTopic is the n-th (1-based) retry topic of topic for group.
func RetryTopic(topic, group string, n int) string {
	return topic + "." + group + ".retry." + strconv.Itoa(n)
}

// DLTTopic is the dead-letter topic of topic for group.
func DLTTopic(topic, group string) string { return topic + "." + group + ".dlt" }

// ParseDLTTopic splits a DLT topic name into its source topic and group
// (both may contain dots: the group is taken from the name's known suffix
// only when group is given).
func ParseDLTTopic(name, group string) (source string, ok bool) {
	suffix := "." + group + ".dlt"
	if group == "" || !strings.HasSuffix(name, suffix) {
		return "", false
	}
	return strings.TrimSuffix(name, suffix), true
}

// stageTopics: index 0 is the source, 1..n the retry steps, n+1 the DLT.
func stageTopics(topic, group string, steps int) []string {
	out := []string{topic}
	for n := 1; n <= steps; n++ {
		out = append(out, RetryTopic(topic, group, n))
	}
	return append(out, DLTTopic(topic, group))
}

// preflight checks that every source topic exists and that its retry and
// DLT topics exist with at least as many partitions (a retry copy keeps its
// source partition number, which is what keeps a key's copies in order).
// Missing ones are created when create is set: created names those this
// call created, existed those another client created between the listing
// and the creation (another member starting at the same time).
func preflight(ctx context.Context, adm *kadm.Client, group string, sources []string, steps int, create bool, rf int16) (created, existed []string, err error) {
	var all, need []string
	for _, s := range sources {
		all = append(all, stageTopics(s, group, steps)...)
	}
	need = sources
	if !create {
		need = all
	}
	td, err := listSettled(ctx, adm, all, need)
	if err != nil {
		return nil, nil, fmt.Errorf("listing topics: %w", err)
	}
	var errs []error
	for _, s := range sources {
		src, ok := td[s]
		if !ok || src.Err != nil {
			errs = append(errs, fmt.Errorf("source topic %s does not exist", s))
			continue
		}
		want := int32(len(src.Partitions))
		for _, name := range stageTopics(s, group, steps)[1:] {
			d, ok := td[name]
			if ok && d.Err == nil {
				if got := int32(len(d.Partitions)); got < want {
					errs = append(errs, fmt.Errorf("topic %s has %d partitions, fewer than its source %s (%d): add partitions", name, got, s, want))
				}
				continue
			}
			if !create {
				errs = append(errs, fmt.Errorf("topic %s does not exist (create it with %d partitions, or allow the group to create it)", name, want))
				continue
			}
			resp, err := adm.CreateTopic(ctx, want, rf, nil, name)
			if err == nil {
				err = resp.Err
			}
			switch {
			case err == nil:
				created = append(created, name)
			case errors.Is(err, kerr.TopicAlreadyExists):
				existed = append(existed, name)
			default:
				errs = append(errs, fmt.Errorf("creating topic %s: %w", name, err))
			}
		}
	}
	return created, existed, errors.Join(errs...)
}

// metadataGrace is how long preflight waits for a topic it does not see
// yet: a cluster answers CreateTopics before every broker's metadata shows
// the topic, so a group started just after an operator (or another member)
// created its topics would otherwise be refused.
const metadataGrace = 5 * time.Second

// listSettled lists topics, listing again (every 200 ms, up to
// metadataGrace) while some of need are missing.
func listSettled(ctx context.Context, adm *kadm.Client, topics, need []string) (kadm.TopicDetails, error) {
	deadline := time.Now().Add(metadataGrace)
	for {
		td, err := adm.ListTopics(ctx, topics...)
		if err != nil {
			return nil, err
		}
		missing := false
		for _, t := range need {
			if d, ok := td[t]; !ok || d.Err != nil {
				missing = true
				break
			}
		}
		if !missing || time.Now().After(deadline) {
			return td, nil
		}
		timer := time.NewTimer(200 * time.Millisecond)
		select {
		case <-ctx.Done():
			timer.Stop()
			return td, nil
		case <-timer.C:
		}
	}
}
