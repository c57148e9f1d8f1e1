{{- define "taskreaper.selectorLabels" -}}
app.kubernetes.io/name: taskreaper
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}
