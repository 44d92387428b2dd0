package cloudimg

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"strings"

	"github.com/cocoonstack/cocoon/internal/disk"
)

// imgInfo is the part of `qemu-img info --output=json` we use.
type imgInfo struct {
	Format         string `json:"format"`
	VirtualSize    int64  `json:"virtual-size"`
	FormatSpecific struct {
		Data struct {
			Compat string `json:"compat"`
		} `json:"data"`
	} `json:"format-specific"`
}

func qemuImg(ctx context.Context, args ...string) ([]byte, error) {
	bin, err := exec.LookPath("qemu-img")
	if err != nil {
		return nil, errors.New("qemu-img not found: install qemu-utils")
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("qemu-img %s: %w: %s", args[0], err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}

// info reads path as format; naming the format keeps qemu-img from probing untrusted input.
func info(ctx context.Context, path, format string) (*imgInfo, error) {
	out, err := qemuImg(ctx, "info", "-f", format, "--output=json", path)
	if err != nil {
		return nil, err
	}
	var i imgInfo
	if err := json.Unmarshal(out, &i); err != nil {
		return nil, fmt.Errorf("parse qemu-img info: %w", err)
	}
	return &i, nil
}

// toQcow2 writes src (qcow2 or raw) as a standalone qcow2 v3 image. A qcow2 source that refers to
// other files is refused: converting it would copy host files into the blob.
func toQcow2(ctx context.Context, src, format, dst string) error {
	if format == "qcow2" {
		backing, dataFile, err := disk.Qcow2Refs(src)
		if err != nil {
			return err
		}
		if backing != "" {
			return fmt.Errorf("qcow2 image has a backing file %q: flatten it first (qemu-img convert -O qcow2)", backing)
		}
		if dataFile != "" {
			return fmt.Errorf("qcow2 image has an external data file %q: flatten it first (qemu-img convert -O qcow2)", dataFile)
		}
	}
	_, err := qemuImg(ctx, "convert", "-q", "-f", format, "-O", "qcow2", "-o", "compat=1.1", src, dst)
	return err
}
