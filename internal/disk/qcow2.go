package disk

import (
	"encoding/json"
	"fmt"
)

// Qcow2Refs reports the other files the qcow2 image at path makes QEMU open: its backing
// file and its external data file ("" when none). The format is named, never probed, so a
// file of any content is read as the qcow2 it claims to be. Images from outside (cloud
// images, snapshot archives) must be checked with it before QEMU or qemu-img convert opens
// them: either reference lets the image read and write a host file.
func Qcow2Refs(path string) (backing, dataFile string, err error) {
	out, err := run("qemu-img", "info", "-f", "qcow2", "--output=json", path)
	if err != nil {
		return "", "", fmt.Errorf("inspect qcow2 %s: %w", path, err)
	}
	var info struct {
		BackingFile    string `json:"backing-filename"`
		FormatSpecific struct {
			Data struct {
				DataFile string `json:"data-file"`
			} `json:"data"`
		} `json:"format-specific"`
	}
	if err := json.Unmarshal(out, &info); err != nil {
		return "", "", fmt.Errorf("inspect qcow2 %s: decode qemu-img output: %w", path, err)
	}
	return info.BackingFile, info.FormatSpecific.Data.DataFile, nil
}
