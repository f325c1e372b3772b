package logutil

import (
	"fmt"
	"io"
	"slices"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Sampling, as etcd configures it: per message and per second, the first
// samplingInitial entries are written, then every samplingThereafter-th.
const (
	samplingInitial    = 100
	samplingThereafter = 100
	samplingTick       = time.Second
)

// timeLayout is etcd's timestamp layout (microseconds, zone as Z or +hhmm).
const timeLayout = "2006-01-02T15:04:05.000000Z0700"

// EncoderConfig is etcd's zap encoder configuration, with timestamps in UTC.
func EncoderConfig() zapcore.EncoderConfig {
	return zapcore.EncoderConfig{
		TimeKey:       "ts",
		LevelKey:      "level",
		NameKey:       "logger",
		CallerKey:     "caller",
		MessageKey:    "msg",
		StacktraceKey: "stacktrace",
		LineEnding:    zapcore.DefaultLineEnding,
		EncodeLevel:   zapcore.LowercaseLevelEncoder,
		EncodeTime: func(t time.Time, enc zapcore.PrimitiveArrayEncoder) {
			enc.AppendString(t.UTC().Format(timeLayout))
		},
		EncodeDuration: zapcore.StringDurationEncoder,
		EncodeCaller:   zapcore.ShortCallerEncoder,
	}
}

// New builds a logger writing to outputs (etcd's --log-outputs values; none
// means "default", standard error) at level (debug, info, warn, error,
// dpanic, panic or fatal) in format ("json" or "console"; "" is json).
func New(level, format string, outputs []string) (*zap.Logger, error) {
	lvl, err := parseLevel(level)
	if err != nil {
		return nil, err
	}
	enc, err := encoding(format)
	if err != nil {
		return nil, err
	}
	paths, err := outputPaths(outputs)
	if err != nil {
		return nil, err
	}
	cfg := zap.Config{
		Level:            zap.NewAtomicLevelAt(lvl),
		Sampling:         &zap.SamplingConfig{Initial: samplingInitial, Thereafter: samplingThereafter},
		Encoding:         enc,
		EncoderConfig:    EncoderConfig(),
		OutputPaths:      paths,
		ErrorOutputPaths: paths,
	}
	return cfg.Build()
}

// NewWithWriter builds a logger like New's that writes to w: for tests, and
// for components that capture their own logs.
func NewWithWriter(level, format string, w io.Writer) (*zap.Logger, error) {
	lvl, err := parseLevel(level)
	if err != nil {
		return nil, err
	}
	enc, err := encoding(format)
	if err != nil {
		return nil, err
	}
	var encoder zapcore.Encoder
	if enc == "console" {
		encoder = zapcore.NewConsoleEncoder(EncoderConfig())
	} else {
		encoder = zapcore.NewJSONEncoder(EncoderConfig())
	}
	ws := zapcore.Lock(zapcore.AddSync(w))
	core := zapcore.NewSamplerWithOptions(zapcore.NewCore(encoder, ws, lvl),
		samplingTick, samplingInitial, samplingThereafter)
	return zap.New(core, zap.AddCaller(), zap.AddStacktrace(zapcore.ErrorLevel), zap.ErrorOutput(ws)), nil
}

func parseLevel(level string) (zapcore.Level, error) {
	lvl, err := zapcore.ParseLevel(level)
	if err != nil {
		return 0, fmt.Errorf("log level %q is not valid; use debug, info, warn, error, panic or fatal", level)
	}
	return lvl, nil
}

func encoding(format string) (string, error) {
	switch format {
	case "json", "":
		return "json", nil
	case "console":
		return "console", nil
	}
	return "", fmt.Errorf("unknown log format: %s, supported values json, console", format)
}

// outputPaths maps --log-outputs values to zap output paths, sorted and
// without duplicates; "/dev/null" anywhere discards everything.
func outputPaths(outputs []string) ([]string, error) {
	if len(outputs) == 0 {
		outputs = []string{"default"}
	}
	if len(outputs) > 1 && slices.Contains(outputs, "default") {
		return nil, fmt.Errorf("multi logoutput for %q is not supported yet", "default")
	}
	if slices.Contains(outputs, "/dev/null") {
		return []string{"/dev/null"}, nil
	}
	paths := make([]string, 0, len(outputs))
	for _, o := range outputs {
		switch o {
		case "default", "stderr", "systemd/journal":
			paths = append(paths, "stderr")
		case "":
			return nil, fmt.Errorf("empty log output")
		default:
			paths = append(paths, o)
		}
	}
	slices.Sort(paths)
	return slices.Compact(paths), nil
}
