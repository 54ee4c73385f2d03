// Package norikvpb is the Go code generated from the project's single source
// of the client API, proto/norikv/v1/norikv.proto (package norikv.v1);
// norikv.proto in this directory is a symbolic link to it. The generated
// code is committed, as is usual for Go, so that `go get` users need no
// protoc.
//
// Regenerate after changing the .proto (protoc 3.21+, and the two plugins
// from the Go module proxy on PATH):
//
//	go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
//	go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2
//	go generate ./proto/...
//
// which runs the same command as the SDK README's manual one:
//
//	cd proto
//	protoc --go_out=. --go_opt=paths=source_relative \
//	       --go-grpc_out=. --go-grpc_opt=paths=source_relative \
//	       norikv.proto
//
// Do not edit the *.pb.go files by hand.
package norikvpb

//go:generate protoc --go_out=. --go_opt=paths=source_relative --go-grpc_out=. --go-grpc_opt=paths=source_relative norikv.proto
