package stream_test

import (
	"context"
	"fmt"
	"io"

	"askgate/internal/stream"
)

func ExampleMemory() {
	ctx := context.Background()
	logs := stream.NewMemory(stream.MemoryOptions{})
	defer logs.Close()

	// The generation writes the answer's log…
	logs.Open(ctx, "answer-1")
	for _, delta := range []string{"Hello", ",", " world"} {
		logs.Append(ctx, "answer-1", delta)
	}
	logs.Finish(ctx, "answer-1")

	// …and a subscriber that has seen event 1 reads the rest. Having fallen
	// behind, it gets the deltas it missed as one event.
	r, err := logs.Read(ctx, "answer-1", 1)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer r.Close()
	for {
		ev, err := r.Next(ctx)
		if err == io.EOF {
			break
		}
		fmt.Printf("%d %q done=%v\n", ev.Seq, ev.Delta, ev.Done)
	}
	// Output:
	// 3 ", world" done=false
	// 4 "" done=true
}
