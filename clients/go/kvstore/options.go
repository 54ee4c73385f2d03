package kvstore

import (
	"log/slog"

	norikv "github.com/norikv/norikv-go"
)

// ClientOption configures a Client.
type ClientOption func(*clientConfig)

type clientConfig struct {
	brokers   []string
	configure func(*norikv.ClientConfig)
	client    *norikv.Client
	logger    *slog.Logger
	onSet     func(key, value []byte)
	onDelete  func(key []byte)
}

// WithBrokers sets the NoriKV node addresses (host:port of their gRPC
// listeners) the client connects to; any one of them suffices, the client
// learns the rest of the cluster from it.
func WithBrokers(brokers ...string) ClientOption {
	return func(c *clientConfig) { c.brokers = append(c.brokers, brokers...) }
}

// WithNoriKVConfig adjusts the NoriKV SDK configuration the client
// connects with (norikv.DefaultClientConfig of the WithBrokers addresses):
// TotalShards, Timeout, Retry. It replaces the seed's WithKafkaOptions.
func WithNoriKVConfig(fn func(*norikv.ClientConfig)) ClientOption {
	return func(c *clientConfig) { c.configure = fn }
}

// WithNoriKVClient makes the client use an existing NoriKV SDK client
// instead of connecting itself (WithBrokers and WithNoriKVConfig are then
// ignored). Close does not close it. Several kvstore clients (one per
// namespace) can share one.
func WithNoriKVClient(client *norikv.Client) ClientOption {
	return func(c *clientConfig) { c.client = client }
}

// WithLogger sets the logger for client operations. If not provided,
// defaults to slog.Default().
func WithLogger(logger *slog.Logger) ClientOption {
	return func(c *clientConfig) { c.logger = logger }
}

// WithOnSetHook registers a callback that fires after each put is applied
// to local storage. This includes both bootstrap replay and live updates
// (this client's writes and other clients'). The callback receives the key
// (without the namespace prefix) and value bytes. It runs on the client's
// watch goroutine: a slow hook delays every later update and every write
// waiting for visibility, and it must not call the Client's Put, Delete or
// Batch (they would wait for the hook's own goroutine).
func WithOnSetHook(fn func(key, value []byte)) ClientOption {
	return func(c *clientConfig) { c.onSet = fn }
}

// WithOnDeleteHook registers a callback that fires after each delete (or
// TTL expiry) is applied to local storage. This includes both bootstrap
// replay (keys local storage held that the cluster no longer has) and live
// updates. The callback receives the key bytes. Same goroutine rules as
// WithOnSetHook.
func WithOnDeleteHook(fn func(key []byte)) ClientOption {
	return func(c *clientConfig) { c.onDelete = fn }
}
