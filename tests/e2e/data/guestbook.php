<?php
// A small guestbook, the unit's "bulletin board" in tests/e2e/test_publish.py: every POST is
// stored as one JSON line (host, uri, content type, and its fields in order as PHP parsed them),
// names and values base64-encoded because a GBK form's bytes are not UTF-8. PHP's own parsers
// (forms, multipart, JSON) are the truth the agent's publish records are held to.

function flatten($value, string $path, array &$out): void {
    // JSON string members by dotted path, as agent.publish names them
    if (is_string($value)) {
        $out[] = [$path, $value];
    } elseif (is_array($value)) {
        foreach ($value as $key => $item) {
            flatten($item, $path === '' ? (string)$key : $path . '.' . $key, $out);
        }
    }
}

if ($_SERVER['REQUEST_METHOD'] !== 'POST') {
    header('Content-Type: text/plain; charset=utf-8');
    echo "guestbook\n";
    exit;
}
$ctype = $_SERVER['CONTENT_TYPE'] ?? '';
$fields = [];
$files = [];
if (stripos($ctype, 'multipart/form-data') === 0) {
    foreach ($_POST as $name => $value) {
        $fields[] = [(string)$name, $value];
    }
    $files = array_keys($_FILES);
} else {
    $raw = file_get_contents('php://input');
    if (strtolower($_SERVER['HTTP_CONTENT_ENCODING'] ?? '') === 'gzip') {
        $raw = gzdecode($raw);
    }
    if (stripos($ctype, 'json') !== false) {
        flatten(json_decode($raw, true), '', $fields);
    } else {
        parse_str($raw, $parsed);  // (it turns '.' and ' ' in names into '_': the posts use plain names)
        foreach ($parsed as $name => $value) {
            $fields[] = [(string)$name, $value];
        }
    }
}
$entry = [
    'host' => $_SERVER['HTTP_HOST'] ?? '',
    'uri' => $_SERVER['REQUEST_URI'] ?? '',
    'ctype' => $ctype,
    'fields' => array_map(fn($f) => [base64_encode($f[0]), base64_encode($f[1])], $fields),
    'files' => $files,
];
file_put_contents($_SERVER['GUESTBOOK_STORE'], json_encode($entry) . "\n", FILE_APPEND | LOCK_EX);
header('Content-Type: text/plain; charset=utf-8');
echo "stored " . count($fields) . "\n";
