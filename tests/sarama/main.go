// Drives yak through sarama 1.22 (Debian's golang-github-shopify-sarama-dev):
// every ClusterAdmin call that version offers for topics, configs and groups,
// DeleteGroups through sarama's Broker (1.22's ClusterAdmin has no
// DeleteConsumerGroup), a produce, a partition consume and a consumer group.
// It prints one JSON line per call, {"call":..., "error":..., ...}, and goes
// on after a failed call, so one run shows everything that works and
// everything that does not. tests/kafka_sarama_test.ts builds and checks it.
//
// Usage: sarama BOOTSTRAP[,BOOTSTRAP...]
//
// ListTopics comes first on purpose: sarama sends DescribeConfigs without
// asking ApiVersions, and a broker that closed the connection on it broke
// every later call of the same client (issue 21).
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/Shopify/sarama"
)

const (
	topic = "sarama-t"
	group = "sarama-g"
	// Records produced to partition 0; DeleteRecords then cuts below `cut`.
	records = 5
	cut     = 2
)

// say prints one result line: the call, its error (null when none) and what it returned.
func say(call string, err error, fields map[string]interface{}) {
	line := map[string]interface{}{"call": call, "error": nil}
	if err != nil {
		line["error"] = err.Error()
	}
	for k, v := range fields {
		line[k] = v
	}
	text, jerr := json.Marshal(line)
	if jerr != nil {
		text = []byte(fmt.Sprintf(`{"call":%q,"error":"json: %s"}`, call, jerr))
	}
	fmt.Println(string(text))
}

func str(s string) *string { return &s }

// kerr is a Kafka error code's text, "" for none (sarama's ErrNoError prints "Not an error, why are you printing me?").
func kerr(e sarama.KError) string {
	if e == sarama.ErrNoError {
		return ""
	}
	return e.Error()
}

func config() *sarama.Config {
	conf := sarama.NewConfig()
	conf.ClientID = "yak-sarama"
	conf.Version = sarama.V2_2_0_0 // the newest sarama 1.22 knows: the newest request versions it sends
	conf.Admin.Timeout = 10 * time.Second
	conf.Net.DialTimeout = 5 * time.Second
	conf.Net.ReadTimeout = 10 * time.Second
	conf.Net.WriteTimeout = 5 * time.Second
	conf.Metadata.Retry.Max = 2
	conf.Metadata.Retry.Backoff = 200 * time.Millisecond
	conf.Producer.Return.Successes = true
	conf.Producer.RequiredAcks = sarama.WaitForAll
	conf.Producer.Partitioner = sarama.NewManualPartitioner
	conf.Consumer.Return.Errors = true
	conf.Consumer.Offsets.Initial = sarama.OffsetOldest
	conf.Consumer.Group.Heartbeat.Interval = 500 * time.Millisecond
	conf.Consumer.Group.Session.Timeout = 6 * time.Second
	conf.Consumer.Group.Rebalance.Timeout = 10 * time.Second
	return conf
}

// topicSummary is what the test checks of a topic in ListTopics.
func topicSummary(d sarama.TopicDetail) map[string]interface{} {
	configs := map[string]string{}
	for k, v := range d.ConfigEntries {
		if v != nil {
			configs[k] = *v
		}
	}
	return map[string]interface{}{"partitions": d.NumPartitions, "replicationFactor": d.ReplicationFactor, "configs": configs}
}

func listTopics(admin sarama.ClusterAdmin, call string) {
	topics, err := admin.ListTopics()
	names := []string{}
	var ours interface{}
	for name, d := range topics {
		names = append(names, name)
		if name == topic {
			ours = topicSummary(d)
		}
	}
	sort.Strings(names)
	say(call, err, map[string]interface{}{"topics": names, "topic": ours})
}

// describeTopicConfig reports the configs the test looks at, each as [value, default]:
// sarama 1.22 sends DescribeConfigs v0, which has no source, only is_default.
func describeTopicConfig(admin sarama.ClusterAdmin, call string, name string) {
	entries, err := admin.DescribeConfig(sarama.ConfigResource{Type: sarama.TopicResource, Name: name})
	picked := map[string][]interface{}{}
	for _, e := range entries {
		switch e.Name {
		case "retention.ms", "compression.type", "cleanup.policy", "max.message.bytes", "segment.bytes":
			picked[e.Name] = []interface{}{e.Value, e.Default}
		}
	}
	say(call, err, map[string]interface{}{"count": len(entries), "configs": picked})
}

func partitionCount(admin sarama.ClusterAdmin, call string) {
	metas, err := admin.DescribeTopics([]string{topic})
	count := -1
	errText := ""
	if err == nil && len(metas) == 1 {
		count = len(metas[0].Partitions)
		if metas[0].Err != sarama.ErrNoError {
			errText = kerr(metas[0].Err)
		}
	}
	say(call, err, map[string]interface{}{"partitions": count, "topicError": errText})
}

func topicAdmin(admin sarama.ClusterAdmin) {
	listTopics(admin, "ListTopics")
	err := admin.CreateTopic(topic, &sarama.TopicDetail{
		NumPartitions:     2,
		ReplicationFactor: 1,
		ConfigEntries: map[string]*string{
			"retention.ms":     str("3600000"),
			"compression.type": str("gzip"),
			"cleanup.policy":   str("delete"),
		},
	}, false)
	say("CreateTopic", err, nil)
	err = admin.CreateTopic(topic, &sarama.TopicDetail{NumPartitions: 2, ReplicationFactor: 1}, false)
	say("CreateTopic again", err, nil)
	err = admin.CreateTopic("sarama-bad", &sarama.TopicDetail{
		NumPartitions: 1, ReplicationFactor: 1, ConfigEntries: map[string]*string{"retention.msec": str("1")},
	}, false)
	say("CreateTopic unknown config", err, nil)
	listTopics(admin, "ListTopics after create")
	partitionCount(admin, "DescribeTopics")
	describeTopicConfig(admin, "DescribeConfig topic", topic)
	_, err = admin.DescribeConfig(sarama.ConfigResource{Type: sarama.TopicResource, Name: "sarama-none"})
	say("DescribeConfig unknown topic", err, nil)
	// AlterConfigs replaces the topic's whole set: compression.type and cleanup.policy go back to defaults.
	err = admin.AlterConfig(sarama.TopicResource, topic, map[string]*string{"retention.ms": str("7200000")}, false)
	say("AlterConfig", err, nil)
	err = admin.AlterConfig(sarama.TopicResource, topic, map[string]*string{"retention.ms": str("1")}, true)
	say("AlterConfig validateOnly", err, nil)
	err = admin.AlterConfig(sarama.TopicResource, topic, map[string]*string{"retention.msec": str("1")}, false)
	say("AlterConfig unknown config", err, nil)
	// retention.ms as the first alter set it: the validate-only and the refused alters changed nothing.
	describeTopicConfig(admin, "DescribeConfig after alter", topic)
	err = admin.CreatePartitions(topic, 3, nil, false)
	say("CreatePartitions", err, nil)
	err = admin.CreatePartitions(topic, 3, nil, false)
	say("CreatePartitions same count", err, nil)
	partitionCount(admin, "DescribeTopics after CreatePartitions")
}

// describeBroker asks for the cluster, then for the controller's configs twice:
// as sarama 1.22's BrokerResource (5, KIP-133's draft numbering, which Kafka
// refuses as an unknown type) and as type 4, Kafka's BROKER (sarama 1.22 calls
// it ClusterResource).
func describeBroker(admin sarama.ClusterAdmin, client sarama.Client) {
	brokers, controller, err := admin.DescribeCluster()
	list := [][]interface{}{}
	for _, b := range brokers {
		list = append(list, []interface{}{b.ID(), b.Addr()})
	}
	sort.Slice(list, func(i, j int) bool { return list[i][0].(int32) < list[j][0].(int32) })
	say("DescribeCluster", err, map[string]interface{}{"brokers": list, "controller": controller})
	// DescribeCluster's Metadata v0 has no controller (sarama says -1); the client's Metadata v5 has.
	b, err := client.Controller()
	id := int32(-1)
	if err == nil {
		id = b.ID()
	}
	say("Controller", err, map[string]interface{}{"controller": id})
	for _, asked := range []struct {
		call string
		typ  sarama.ConfigResourceType
	}{{"DescribeConfig BrokerResource", sarama.BrokerResource}, {"DescribeConfig broker", sarama.ClusterResource}} {
		entries, err := admin.DescribeConfig(sarama.ConfigResource{Type: asked.typ, Name: fmt.Sprint(id)})
		picked := map[string][]interface{}{}
		for _, e := range entries {
			if e.Name == "broker.id" || e.Name == "log.retention.ms" || e.Name == "num.partitions" {
				picked[e.Name] = []interface{}{e.Value, e.ReadOnly, e.Default}
			}
		}
		say(asked.call, err, map[string]interface{}{"type": asked.typ, "count": len(entries), "configs": picked})
	}
}

func produce(client sarama.Client) {
	producer, err := sarama.NewSyncProducerFromClient(client)
	if err != nil {
		say("SendMessages", err, nil)
		return
	}
	defer producer.Close()
	msgs := []*sarama.ProducerMessage{}
	for i := 0; i < records; i++ {
		msgs = append(msgs, &sarama.ProducerMessage{
			Topic: topic, Partition: 0, Key: sarama.StringEncoder(fmt.Sprint("k", i)),
			Value: sarama.StringEncoder(fmt.Sprint("v", i)),
		})
	}
	err = producer.SendMessages(msgs)
	offsets := []int64{}
	for _, m := range msgs {
		offsets = append(offsets, m.Offset)
	}
	say("SendMessages", err, map[string]interface{}{"offsets": offsets})
}

// consume reads partition 0 from its oldest offset until `want` records or 10 s.
func consume(client sarama.Client, call string, want int) {
	consumer, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		say(call, err, nil)
		return
	}
	defer consumer.Close()
	pc, err := consumer.ConsumePartition(topic, 0, sarama.OffsetOldest)
	if err != nil {
		say(call, err, nil)
		return
	}
	defer pc.Close()
	got := []string{}
	deadline := time.After(10 * time.Second)
	for len(got) < want {
		select {
		case m := <-pc.Messages():
			got = append(got, fmt.Sprintf("%d:%s=%s", m.Offset, m.Key, m.Value))
		case e := <-pc.Errors():
			say(call, e, map[string]interface{}{"records": got})
			return
		case <-deadline:
			say(call, fmt.Errorf("%d of %d records in 10 s", len(got), want), map[string]interface{}{"records": got})
			return
		}
	}
	say(call, nil, map[string]interface{}{"records": got})
}

func deleteRecords(admin sarama.ClusterAdmin, client sarama.Client) {
	err := admin.DeleteRecords(topic, map[int32]int64{0: cut})
	say("DeleteRecords", err, nil)
	// sarama 1.22 drops the partitions' errors of DeleteRecords: the log start says whether it worked.
	oldest, err := client.GetOffset(topic, 0, sarama.OffsetOldest)
	say("GetOffset oldest", err, map[string]interface{}{"offset": oldest})
}

// handler counts the records a consumer group member gets, marks each one and
// describes the group while the member is in it.
type handler struct {
	admin sarama.ClusterAdmin
	want  int
	got   []string
	done  chan struct{}
}

func (h *handler) Setup(s sarama.ConsumerGroupSession) error {
	say("ConsumerGroup Setup", nil, map[string]interface{}{"claims": s.Claims(), "generation": s.GenerationID()})
	return nil
}

func (h *handler) Cleanup(sarama.ConsumerGroupSession) error { return nil }

func (h *handler) ConsumeClaim(s sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	for m := range claim.Messages() {
		s.MarkMessage(m, "sarama-meta")
		h.got = append(h.got, fmt.Sprintf("%d/%d:%s", m.Partition, m.Offset, m.Value))
		if len(h.got) == h.want {
			describeGroups(h.admin, "DescribeConsumerGroups live")
			close(h.done)
		}
	}
	return nil
}

func describeGroups(admin sarama.ClusterAdmin, call string) {
	groups, err := admin.DescribeConsumerGroups([]string{group})
	out := []map[string]interface{}{}
	for _, g := range groups {
		members := []map[string]interface{}{}
		for _, m := range g.Members {
			member := map[string]interface{}{"clientId": m.ClientId}
			if meta, merr := m.GetMemberMetadata(); merr == nil && meta != nil {
				member["topics"] = meta.Topics
			} else {
				member["metadataError"] = fmt.Sprint(merr)
			}
			if assign, aerr := m.GetMemberAssignment(); aerr == nil && assign != nil {
				member["assignment"] = assign.Topics
			} else {
				member["assignmentError"] = fmt.Sprint(aerr)
			}
			members = append(members, member)
		}
		out = append(out, map[string]interface{}{
			"group": g.GroupId, "error": kerr(g.Err), "state": g.State,
			"protocolType": g.ProtocolType, "protocol": g.Protocol, "members": members,
		})
	}
	say(call, err, map[string]interface{}{"groups": out})
}

// consumerGroup joins `group` on the topic, reads what is left of it (partition
// 0 from `cut`; partitions 1 and 2 are empty), commits and leaves.
func consumerGroup(admin sarama.ClusterAdmin, client sarama.Client) {
	cg, err := sarama.NewConsumerGroupFromClient(group, client)
	if err != nil {
		say("ConsumerGroup", err, nil)
		return
	}
	h := &handler{admin: admin, want: records - cut, done: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	finished := make(chan error, 1)
	go func() { finished <- cg.Consume(ctx, []string{topic}, h) }()
	var cgErr error
	select {
	case <-h.done:
	case cgErr = <-finished:
	case e := <-cg.Errors():
		cgErr = e
	case <-time.After(15 * time.Second):
		cgErr = fmt.Errorf("%d of %d records in 15 s", len(h.got), h.want)
	}
	cancel()
	select {
	case <-finished:
	case <-time.After(10 * time.Second):
		cgErr = fmt.Errorf("Consume did not return within 10 s of its cancel (%v)", cgErr)
	}
	// Close commits the marked offsets and leaves the group.
	if err := cg.Close(); err != nil && cgErr == nil {
		cgErr = err
	}
	sort.Strings(h.got)
	say("ConsumerGroup", cgErr, map[string]interface{}{"records": h.got})
}

func groupAdmin(admin sarama.ClusterAdmin, client sarama.Client) {
	groups, err := admin.ListConsumerGroups()
	say("ListConsumerGroups", err, map[string]interface{}{"groups": groups})
	describeGroups(admin, "DescribeConsumerGroups")
	offsets, err := admin.ListConsumerGroupOffsets(group, map[string][]int32{topic: {0, 1, 2}})
	committed := map[string][]interface{}{}
	if err == nil {
		for p, b := range offsets.Blocks[topic] {
			committed[fmt.Sprint(p)] = []interface{}{b.Offset, b.Metadata, kerr(b.Err)}
		}
	}
	say("ListConsumerGroupOffsets", err, map[string]interface{}{"offsets": committed})
	coordinator, err := client.Coordinator(group)
	if err != nil {
		say("DeleteGroups", err, nil)
		return
	}
	rsp, err := coordinator.DeleteGroups(&sarama.DeleteGroupsRequest{Groups: []string{group}})
	result := map[string]string{}
	if err == nil {
		for g, e := range rsp.GroupErrorCodes {
			result[g] = kerr(e)
		}
	}
	say("DeleteGroups", err, map[string]interface{}{"groups": result})
	groups, err = admin.ListConsumerGroups()
	say("ListConsumerGroups after delete", err, map[string]interface{}{"groups": groups})
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: sarama BOOTSTRAP[,BOOTSTRAP...]")
		os.Exit(2)
	}
	addrs := strings.Split(os.Args[1], ",")
	conf := config()
	client, err := sarama.NewClient(addrs, conf)
	if err != nil {
		say("NewClient", err, nil)
		os.Exit(1)
	}
	defer client.Close()
	admin, err := sarama.NewClusterAdmin(addrs, conf)
	if err != nil {
		say("NewClusterAdmin", err, nil)
		os.Exit(1)
	}
	defer admin.Close()

	topicAdmin(admin)
	describeBroker(admin, client)
	produce(client)
	consume(client, "ConsumePartition", records)
	deleteRecords(admin, client)
	consume(client, "ConsumePartition after DeleteRecords", records-cut)
	consumerGroup(admin, client)
	groupAdmin(admin, client)
	err = admin.DeleteTopic(topic)
	say("DeleteTopic", err, nil)
	listTopics(admin, "ListTopics after delete")
	say("done", nil, nil)
}
