% rebase('base.tpl', page='error')
<h1>{{code}} · {{heading}}</h1>
<p class="error-box" id="error-message">{{error}}</p>
<p><a href="/ui/">Back to the job definitions</a></p>
