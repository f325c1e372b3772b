package transport

import (
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
)

// codecName is the gRPC content-subtype of the peer service. Frames are
// already serialized, so the codec passes []byte through untouched.
const codecName = "strata-raft-frame"

func init() {
	encoding.RegisterCodec(frameCodec{})
}

// frameCodec is a gRPC codec whose messages are *[]byte frames.
type frameCodec struct{}

func (frameCodec) Name() string { return codecName }

func (frameCodec) Marshal(v any) ([]byte, error) {
	b, ok := v.(*[]byte)
	if !ok {
		return nil, fmt.Errorf("transport: codec cannot marshal %T", v)
	}
	return *b, nil
}

// Unmarshal keeps data: gRPC hands a codec a freshly materialized buffer.
func (frameCodec) Unmarshal(data []byte, v any) error {
	b, ok := v.(*[]byte)
	if !ok {
		return fmt.Errorf("transport: codec cannot unmarshal into %T", v)
	}
	*b = data
	return nil
}

const (
	serviceName         = "strata.transport.Raft"
	methodSnapshot      = "/" + serviceName + "/Snapshot"
	streamIndexSnapshot = 0
)

// peerService is the server side of the peer service, as grpc.ServiceDesc
// requires a handler type.
type peerService interface {
	snapshot(grpc.ServerStream) error
}

// serviceDesc describes the peer service without protoc:
//
//	service Raft {
//	  // Snapshot carries one MsgSnap frame and then snapshot data frames;
//	  // the receiver answers with one empty frame once installed.
//	  rpc Snapshot(stream Frame) returns (Frame);
//	}
var serviceDesc = grpc.ServiceDesc{
	ServiceName: serviceName,
	HandlerType: (*peerService)(nil),
	Streams: []grpc.StreamDesc{
		streamIndexSnapshot: {
			StreamName:    "Snapshot",
			Handler:       func(srv any, s grpc.ServerStream) error { return srv.(peerService).snapshot(s) },
			ClientStreams: true,
		},
	},
	Metadata: "strata/internal/transport",
}
