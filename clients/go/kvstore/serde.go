package kvstore

import (
	"encoding/json"
	"fmt"

	"google.golang.org/protobuf/proto"
)

// Serde handles serialization and deserialization of values.
type Serde[T any] interface {
	Serialize(v T) ([]byte, error)
	Deserialize(b []byte) (T, error)
}

// JSONSerde serializes values as JSON.
type JSONSerde[T any] struct{}

// Serialize marshals the value to JSON.
func (*JSONSerde[T]) Serialize(v T) ([]byte, error) { return json.Marshal(v) }

// Deserialize unmarshals JSON bytes to the value.
func (*JSONSerde[T]) Deserialize(b []byte) (T, error) {
	var v T
	err := json.Unmarshal(b, &v)
	return v, err
}

// ProtoOption configures a ProtoSerde.
type ProtoOption func(*protoConfig)

type protoConfig struct {
	deterministic bool
}

// WithDeterministic makes Serialize produce the same bytes for equal
// messages (map entries sorted), at some cost. (The seed's Schema Registry
// options are Kafka/Confluent infrastructure and have no NoriKV
// counterpart: values are plain protobuf bytes.)
func WithDeterministic() ProtoOption {
	return func(c *protoConfig) { c.deterministic = true }
}

// ProtoSerde serializes values as protobuf.
type ProtoSerde[T proto.Message] struct {
	factory func() T
	marshal proto.MarshalOptions
}

// Proto returns a protobuf serde for type T. The factory function must
// return a new instance of the proto message.
//
//	serde, err := kvstore.Proto(func() *pb.MyMessage { return &pb.MyMessage{} })
func Proto[T proto.Message](factory func() T, opts ...ProtoOption) (Serde[T], error) {
	if factory == nil {
		return nil, fmt.Errorf("kvstore: Proto: factory is nil")
	}
	var cfg protoConfig
	for _, o := range opts {
		o(&cfg)
	}
	probe := factory()
	if any(probe) == nil || !probe.ProtoReflect().IsValid() {
		return nil, fmt.Errorf("kvstore: Proto: factory returned a nil message; it must return a new, empty message")
	}
	return &ProtoSerde[T]{factory: factory, marshal: proto.MarshalOptions{Deterministic: cfg.deterministic}}, nil
}

// Serialize marshals the protobuf message.
func (s *ProtoSerde[T]) Serialize(v T) ([]byte, error) { return s.marshal.Marshal(v) }

// Deserialize unmarshals protobuf bytes into a new message from the
// factory.
func (s *ProtoSerde[T]) Deserialize(b []byte) (T, error) {
	m := s.factory()
	if err := proto.Unmarshal(b, m); err != nil {
		var zero T
		return zero, err
	}
	return m, nil
}
